package sdk

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
)

// Logger returns a *slog.Logger whose records go to Faro's log, tagged with
// the plugin's name. The level filter is Faro's; attributes are rendered as
// key=value after the message.
func Logger() *slog.Logger { return slog.New(hostHandler{}) }

// LogDebug, LogInfo, LogWarn and LogError log through Logger.
func LogDebug(msg string, args ...any) { Logger().Debug(msg, args...) }

// LogInfo logs at info level; see LogDebug.
func LogInfo(msg string, args ...any) { Logger().Info(msg, args...) }

// LogWarn logs at warn level; see LogDebug.
func LogWarn(msg string, args ...any) { Logger().Warn(msg, args...) }

// LogError logs at error level; see LogDebug.
func LogError(msg string, args ...any) { Logger().Error(msg, args...) }

// hostHandler is a slog.Handler writing through the host's log import.
type hostHandler struct {
	prefix string // attributes added with WithAttrs, already rendered
	group  string // dotted group prefix for later attributes
}

func (hostHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h hostHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	b.WriteString(h.prefix)
	r.Attrs(func(a slog.Attr) bool {
		appendAttr(&b, h.group, a)
		return true
	})
	hostLog(int32(r.Level), b.String())
	return nil
}

func (h hostHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	var b strings.Builder
	b.WriteString(h.prefix)
	for _, a := range attrs {
		appendAttr(&b, h.group, a)
	}
	h.prefix = b.String()
	return h
}

func (h hostHandler) WithGroup(name string) slog.Handler {
	if name != "" {
		h.group += name + "."
	}
	return h
}

func appendAttr(b *strings.Builder, group string, a slog.Attr) {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return
	}
	if a.Value.Kind() == slog.KindGroup {
		if a.Key != "" {
			group += a.Key + "."
		}
		for _, ga := range a.Value.Group() {
			appendAttr(b, group, ga)
		}
		return
	}
	v := a.Value.String()
	if v == "" || strings.ContainsAny(v, " \t\n\"=") {
		v = strconv.Quote(v)
	}
	fmt.Fprintf(b, " %s%s=%s", group, a.Key, v)
}
