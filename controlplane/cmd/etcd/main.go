// Command etcd is upstream's etcd server, built from the published go.etcd.io/etcd/server/v3
// module. Fulcrum itself has no Go code: this module exists only so that
// scripts/build-control-plane.sh can build a real Kubernetes control plane for the tests and
// the lab. This file mirrors go.etcd.io/etcd/server/v3/main.go (the package etcd's own build
// turns into bin/etcd); keep it that way.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
