package wasmhost

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/faro-dev/faro/plugins/sdk/abi"
)

// post serves http_post: an application/json POST to an allowed host, under
// the call's context (so the event's timeout applies), with the response
// body capped (the caller caps the request). It returns the HTTP status or a negative ABI code.
// Only scheme and host are logged: webhook URLs often carry a secret.
func (p *Plugin) post(ctx context.Context, rawURL string, body []byte) (int32, []byte) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		p.log.Warn("plugin HTTP post refused: not a plain http(s) URL")
		return abi.ErrInvalid, nil
	}
	if !p.allowed(u) {
		p.log.Warn("plugin HTTP post refused: host not in allowed_hosts", "host", u.Host, "allowed_hosts", p.spec.AllowedHosts)
		return abi.ErrDenied, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return abi.ErrInvalid, nil
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "faro-plugin/"+p.spec.Name)
	resp, err := p.host.client.Do(req)
	if err != nil {
		p.log.Warn("plugin HTTP post failed", "url", u.Scheme+"://"+u.Host, "error", redact(err))
		return abi.ErrFailed, nil
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, abi.MaxHTTPResponse))
	if err != nil {
		p.log.Warn("plugin HTTP post failed reading the response", "url", u.Scheme+"://"+u.Host, "error", redact(err))
		return abi.ErrFailed, nil
	}
	return int32(resp.StatusCode), b
}

// allowed matches the URL's host against allowed_hosts entries, "host"
// (any port) or "host:port" (that port; a URL without one has its scheme's
// default port). Names compare case-insensitively, IPv6 with or without
// brackets.
func (p *Plugin) allowed(u *url.URL) bool {
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	for _, a := range p.spec.AllowedHosts {
		ah, ap, err := net.SplitHostPort(a)
		if err != nil {
			ah, ap = strings.Trim(a, "[]"), ""
		}
		if strings.EqualFold(ah, host) && (ap == "" || ap == port) {
			return true
		}
	}
	return false
}

// redact drops the URL (path and query included) a client error carries.
func redact(err error) error {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		return ue.Err
	}
	return err
}
