// Package broker gives the examples their sluice.Client: a server's, when
// --server (or SLUICE_SERVER) names one, else a broker embedded in the program.
// Either way the examples see the same interface, so each runs unchanged
// against both.
package broker

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/sluicemq/sluice"
	"github.com/sluicemq/sluice/client"
)

// Flags are the flags every example takes.
type Flags struct {
	// Server is the address of a sluice server (sluice serve); empty embeds a
	// broker instead.
	Server string
	// Data is the embedded broker's data directory; empty means a temporary
	// one, removed on exit.
	Data string
	// Demo runs the example's demo scenario once, instead of its long-running
	// mode.
	Demo bool
}

// AddFlags registers --server, --data and --demo on fs.
func AddFlags(fs *flag.FlagSet) *Flags {
	f := &Flags{}
	fs.StringVar(&f.Server, "server", os.Getenv("SLUICE_SERVER"),
		"a sluice server, host:port (or SLUICE_SERVER); default: a broker embedded in this program")
	fs.StringVar(&f.Data, "data", "",
		"the embedded broker's data directory (default: a temporary directory, removed on exit)")
	fs.BoolVar(&f.Demo, "demo", false, "run the demo scenario once and exit")
	return f
}

// Run opens the client the flags name, runs f with it in a context that ends
// on Ctrl-C or SIGTERM, and releases the client. It returns the errors of all
// three; an example's main exits with them.
func (f *Flags) Run(run func(ctx context.Context, cli sluice.Client) error) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cli, closeCli, err := f.Open()
	if err != nil {
		return err
	}
	return errors.Join(run(ctx, cli), closeCli())
}

// Open returns the client the flags name, and the function that releases it
// (and removes a temporary data directory).
func (f *Flags) Open() (sluice.Client, func() error, error) {
	if f.Server != "" {
		c, err := client.Dial(f.Server)
		if err != nil {
			return nil, nil, err
		}
		return c, c.Close, nil
	}
	dir, temp := f.Data, false
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "sluice-example-"); err != nil {
			return nil, nil, err
		}
		temp = true
	}
	b, err := sluice.Open(dir, nil)
	if err != nil {
		if temp {
			os.RemoveAll(dir)
		}
		return nil, nil, err
	}
	closeFn := func() error {
		err := b.Close()
		if temp {
			err = errors.Join(err, os.RemoveAll(dir))
		}
		return err
	}
	return b, closeFn, nil
}

// DemoName returns base with a random suffix: a demo's streams get names of
// their own, so that it can run again on the same broker, and never touches
// the streams of the example's long-running mode.
func DemoName(base string) string {
	return base + "-demo-" + strings.ToLower(rand.Text()[:6])
}

// WaitSettled waits until every message of subscription sub is acknowledged or
// dead-lettered (its backlog is 0), or the worker reports on worked that it
// stopped.
func WaitSettled(ctx context.Context, cli sluice.Client, stream, sub string, worked <-chan error) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		info, err := cli.Subscription(ctx, stream, sub)
		if err != nil {
			return err
		}
		if info.Backlog == 0 {
			return nil
		}
		select {
		case <-tick.C:
		case err := <-worked:
			return fmt.Errorf("worker stopped: %w", err)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
