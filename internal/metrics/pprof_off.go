//go:build !pprof

package metrics

import "net/http"

// handlePprof reports that this binary serves no profiles: without the
// pprof build tag it does not link them.
func handlePprof(*http.ServeMux) bool { return false }
