module github.com/sluicemq/sluice

go 1.26

require (
	connectrpc.com/connect v1.21.0
	github.com/cespare/xxhash/v2 v2.3.0
	go.uber.org/goleak v1.3.0
	google.golang.org/protobuf v1.36.12
	pgregory.net/rapid v1.3.0
)
