// Command bench runs the same workloads against sluice and its peers and
// prints a markdown table of the results.
//
//	go run ./bench            # the full run
//	go run ./bench --quick    # smaller counts, one run each
package main

import (
	"fmt"
	"os"
)

func main() {
	for _, f := range peers {
		fmt.Fprintf(os.Stdout, "%s (%s)\n", f.Name, f.Durability)
	}
}
