// Command informer is the baseline of `make bench-e2e` (internal/benche2e):
// a plain client-go dynamic informer on the ConfigMaps of one namespace that
// prints one line per event, as Faro's event log does, and nothing else. It
// is a binary of its own so that its memory is that of an informer alone.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
)

var configMaps = schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}

func main() {
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig file")
	namespace := flag.String("namespace", "", "namespace to watch")
	flag.Parse()
	if err := runInformer(*kubeconfig, *namespace); err != nil {
		fmt.Fprintln(os.Stderr, "informer:", err)
		os.Exit(1)
	}
}

// runInformer runs a dynamic informer on the ConfigMaps of namespace and
// writes one line per event it handles, shaped like Faro's matched lines.
func runInformer(kubeconfig, namespace string) error {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	print := func(typ string, obj any) {
		if u, ok := obj.(*unstructured.Unstructured); ok {
			fmt.Printf("CONFIG [%s] v1/configmaps %s/%s\n", typ, u.GetNamespace(), u.GetName())
		}
	}
	inf := dynamicinformer.NewFilteredDynamicInformer(dyn, configMaps, namespace, 0, cache.Indexers{}, nil).Informer()
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { print("ADDED", obj) },
		UpdateFunc: func(_, obj any) { print("UPDATED", obj) },
		DeleteFunc: func(obj any) { print("DELETED", obj) },
	}); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	inf.RunWithContext(ctx)
	return nil
}
