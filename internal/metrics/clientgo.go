package metrics

import (
	"context"
	"net/url"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientmetrics "k8s.io/client-go/tools/metrics"
)

// client-go's REST client metrics, with the names and labels Kubernetes'
// own components and controller-runtime export. client-go accepts one set
// of adapters per process: registerClientGo runs once, from init.
var (
	restRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "rest_client_requests_total",
		Help: "Number of HTTP requests, partitioned by status code, method, and host.",
	}, []string{"code", "method", "host"})
	restLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "rest_client_request_duration_seconds",
		Help:    "Request latency in seconds. Broken down by verb and host.",
		Buckets: restBuckets,
	}, []string{"verb", "host"})
	restRateLimiter = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "rest_client_rate_limiter_duration_seconds",
		Help:    "Client side rate limiter latency in seconds. Broken down by verb, and host.",
		Buckets: restBuckets,
	}, []string{"verb", "host"})
	restRetries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "rest_client_request_retries_total",
		Help: "Number of request retries, partitioned by status code, verb, and host.",
	}, []string{"code", "verb", "host"})
)

// restBuckets are Kubernetes' REST client duration buckets.
var restBuckets = []float64{0.005, 0.025, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0}

func registerClientGo(r prometheus.Registerer) {
	r.MustRegister(restRequests, restLatency, restRateLimiter, restRetries)
	clientmetrics.Register(clientmetrics.RegisterOpts{
		RequestResult:      resultAdapter{restRequests},
		RequestLatency:     latencyAdapter{restLatency},
		RateLimiterLatency: latencyAdapter{restRateLimiter},
		RequestRetry:       retryAdapter{restRetries},
	})
}

// latencyAdapter labels by verb and host only: the URL path would make a
// series per object.
type latencyAdapter struct{ m *prometheus.HistogramVec }

func (a latencyAdapter) Observe(_ context.Context, verb string, u url.URL, latency time.Duration) {
	a.m.WithLabelValues(verb, u.Host).Observe(latency.Seconds())
}

type resultAdapter struct{ m *prometheus.CounterVec }

func (a resultAdapter) Increment(_ context.Context, code, method, host string) {
	a.m.WithLabelValues(code, method, host).Inc()
}

type retryAdapter struct{ m *prometheus.CounterVec }

func (a retryAdapter) IncrementRetry(_ context.Context, code, method, host string) {
	a.m.WithLabelValues(code, method, host).Inc()
}
