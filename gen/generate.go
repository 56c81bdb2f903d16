// Package gen holds the Go code generated from the protobuf API in api/: package
// sluicev1 (gen/sluice/v1) has the messages, and sluicev1connect the Connect and
// gRPC clients and handler interfaces. The generated files are committed; after
// changing api/, regenerate them with
//
//	go generate ./gen
package gen

//go:generate go run github.com/bufbuild/buf/cmd/buf@v1.75.0 generate --template ../api/buf.gen.yaml --output .. ../api
