package wasmhost

import "context"

// NewUninterruptible is New without the interrupt checks that let a timeout
// stop a running call, for benchmarks measuring their cost.
func NewUninterruptible(ctx context.Context, opts Options) (*Host, error) {
	return newHost(ctx, opts, false)
}

// StartInstance starts and closes one instance of p, for benchmarks.
func StartInstance(ctx context.Context, p *Plugin) error {
	inst, err := p.newInstance(ctx)
	if err != nil {
		return err
	}
	inst.close()
	return nil
}
