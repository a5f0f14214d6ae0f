package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// ServerOptions configures NewServer.
type ServerOptions struct {
	// MetricsAddr serves /metrics; "" or "0" turns it off.
	MetricsAddr string
	// ProbeAddr serves /healthz and /readyz; "" or "0" turns it off.
	ProbeAddr string
	// PprofAddr serves Go's profiles under /debug/pprof/ (net/http/pprof)
	// in a binary built with -tags pprof (elsewhere it is an error, so
	// that the profiling code is not in every binary); "" or "0" turns it
	// off.
	PprofAddr string
	// Probes holds the checks; nil serves probes without checks: /healthz
	// passes, /readyz fails until a readiness check is added.
	Probes *Probes
	// Gatherer is what /metrics serves; default Registry.
	Gatherer RegistererGatherer
}

// Server serves /metrics, the probes and the profiles, each on its own
// listener.
type Server struct {
	servers []*http.Server
	lns     []net.Listener
	metrics net.Addr
	probes  net.Addr
	pprof   net.Addr
}

// shutdownTimeout bounds how long Run waits for requests in flight.
const shutdownTimeout = 5 * time.Second

// NewServer binds the listeners (so that an address in use is an error at
// start, not in the log) and returns a Server that Run serves.
func NewServer(opts ServerOptions) (*Server, error) {
	if opts.Gatherer == nil {
		opts.Gatherer = Registry
	}
	if opts.Probes == nil {
		opts.Probes = NewProbes()
	}
	s := &Server{}
	if on(opts.MetricsAddr) {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.InstrumentMetricHandler(opts.Gatherer,
			promhttp.HandlerFor(opts.Gatherer, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})))
		addr, err := s.listen("--metrics-bind-address", opts.MetricsAddr, mux)
		if err != nil {
			return nil, err
		}
		s.metrics = addr
	}
	if on(opts.ProbeAddr) {
		mux := http.NewServeMux()
		mux.Handle("/healthz", opts.Probes.handler(&opts.Probes.live, nil))
		mux.Handle("/readyz", opts.Probes.handler(&opts.Probes.ready, &notStarted))
		addr, err := s.listen("--health-probe-bind-address", opts.ProbeAddr, mux)
		if err != nil {
			s.close()
			return nil, err
		}
		s.probes = addr
	}
	if on(opts.PprofAddr) {
		mux := http.NewServeMux()
		if !handlePprof(mux) {
			s.close()
			return nil, errors.New("--pprof-bind-address: this faro is built without profiling (build it with -tags pprof)")
		}
		addr, err := s.listen("--pprof-bind-address", opts.PprofAddr, mux)
		if err != nil {
			s.close()
			return nil, err
		}
		s.pprof = addr
	}
	return s, nil
}

func on(addr string) bool { return addr != "" && addr != "0" }

func (s *Server) listen(flag, addr string, h http.Handler) (net.Addr, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", flag, addr, err)
	}
	s.lns = append(s.lns, ln)
	s.servers = append(s.servers, &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second})
	return ln.Addr(), nil
}

func (s *Server) close() {
	for _, ln := range s.lns {
		_ = ln.Close()
	}
}

// MetricsAddr is the address /metrics is served on; nil when off.
func (s *Server) MetricsAddr() net.Addr { return s.metrics }

// ProbeAddr is the address the probes are served on; nil when off.
func (s *Server) ProbeAddr() net.Addr { return s.probes }

// PprofAddr is the address the profiles are served on; nil when off.
func (s *Server) PprofAddr() net.Addr { return s.pprof }

// Run serves until ctx is done, then shuts the servers down, waiting
// (bounded) for requests in flight. It returns the first serving error.
func (s *Server) Run(ctx context.Context) error {
	errs := make(chan error, len(s.servers))
	var wg sync.WaitGroup
	for i, srv := range s.servers {
		wg.Go(func() {
			if err := srv.Serve(s.lns[i]); !errors.Is(err, http.ErrServerClosed) {
				errs <- err
			}
		})
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errs:
	}
	stop, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	for _, srv := range s.servers {
		_ = srv.Shutdown(stop)
	}
	wg.Wait()
	return err
}
