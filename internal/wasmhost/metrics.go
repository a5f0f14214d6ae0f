package wasmhost

import "github.com/faro-dev/faro/internal/metrics"

// metricResults maps failure kinds to faro_plugin_calls_total's result label.
var metricResults = [...]string{
	KindError:    metrics.PluginError,
	KindPanic:    metrics.PluginPanic,
	KindTrap:     metrics.PluginTrap,
	KindTimeout:  metrics.PluginTimeout,
	KindOOM:      metrics.PluginOOM,
	KindOutput:   metrics.PluginOutput,
	KindCanceled: metrics.PluginCanceled,
}

// metricResult is the result label of a call that ended with err.
func metricResult(err *Error) string {
	if err == nil {
		return metrics.PluginOK
	}
	return metricResults[err.Kind]
}
