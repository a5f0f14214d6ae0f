//go:build !pprof

package metrics

// pprofBuilt says whether the test binary serves profiles.
const pprofBuilt = false
