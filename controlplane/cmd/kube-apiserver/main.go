// Command kube-apiserver is upstream's kube-apiserver, built from the published
// k8s.io/kubernetes module. Fulcrum itself has no Go code: this module exists only so that
// scripts/build-control-plane.sh can build a real Kubernetes control plane for the tests and
// the lab. This file mirrors k8s.io/kubernetes/cmd/kube-apiserver/apiserver.go; keep it that way.
package main

import (
	"os"
	_ "time/tzdata" // for timeZone support in CronJob

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"          // for JSON log format registration
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // load all the prometheus client-go plugins
	_ "k8s.io/component-base/metrics/prometheus/version"  // for version metric registration
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	command := app.NewAPIServerCommand()
	code := cli.Run(command)
	os.Exit(code)
}
