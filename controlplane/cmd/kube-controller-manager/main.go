// Command kube-controller-manager is upstream's kube-controller-manager, built from the
// published k8s.io/kubernetes module. Fulcrum itself has no Go code: this module exists only so
// that scripts/build-control-plane.sh can build a real Kubernetes control plane for the tests
// and the lab. This file mirrors
// k8s.io/kubernetes/cmd/kube-controller-manager/controller-manager.go; keep it that way.
package main

import (
	"os"
	_ "time/tzdata" // for CronJob Time Zone support

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"          // for JSON log format registration
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // load all the prometheus client-go plugin
	_ "k8s.io/component-base/metrics/prometheus/version"  // for version metric registration
	"k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

func main() {
	command := app.NewControllerManagerCommand()
	code := cli.Run(command)
	os.Exit(code)
}
