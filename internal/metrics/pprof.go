//go:build pprof

package metrics

import (
	"net/http"
	"net/http/pprof"
)

// handlePprof adds Go's profiles to mux and reports that it did.
func handlePprof(mux *http.ServeMux) bool {
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return true
}
