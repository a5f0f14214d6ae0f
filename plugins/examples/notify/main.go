// Command notify is a Faro plugin that posts a chat-style message for each
// event to a webhook (Slack- and Mattermost-compatible: a JSON body with a
// "text" field), through the host, and emits a record of what it sent.
//
// Config:
//
//	webhook_url: https://hooks.example.com/T000/B000   # required; its host must be in allowed_hosts
//	link: https://console.example.com/{namespace}/{kind}/{name}  # optional
//	events: [ADDED, UPDATED, DELETED]                  # default: all
//	include_initial: false                             # also notify for the initial listing
//
// The link template takes {type} {gvr} {kind} {namespace} {name} {key}
// {uid} {rule}, path-escaped. A non-2xx answer or a failed post is an error,
// so Faro retries the event.
//
// Build: GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o notify.wasm .
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/faro-dev/faro/plugins/sdk"
)

func main() {}

// cfg is the plugin's configuration; the host refuses a config with other
// keys or types when it loads the plugin.
var cfg config

func init() {
	sdk.Config(&cfg)
	sdk.Handle(handle)
}

type config struct {
	WebhookURL     string   `json:"webhook_url"`
	Link           string   `json:"link"`
	Events         []string `json:"events"`
	IncludeInitial bool     `json:"include_initial"`
}

// message is the webhook body.
type message struct {
	Text  string `json:"text"`
	Event string `json:"event"`
	Kind  string `json:"kind"`
	Key   string `json:"key"`
	GVR   string `json:"gvr"`
	Rule  string `json:"rule,omitempty"`
	Link  string `json:"link,omitempty"`
}

func handle(ev sdk.Event) error {
	if cfg.WebhookURL == "" {
		return errors.New("config: webhook_url is required")
	}
	if ev.Initial && !cfg.IncludeInitial || len(cfg.Events) > 0 && !slices.Contains(cfg.Events, ev.Type) {
		return nil
	}
	msg := format(ev, ev.Kind(), cfg.Link)
	body, err := json.Marshal(msg)
	if err != nil {
		return err
	}
	status, resp, err := sdk.HTTPPost(cfg.WebhookURL, body)
	if err != nil {
		return fmt.Errorf("posting to the webhook: %w", err)
	}
	if status < 200 || status > 299 {
		return fmt.Errorf("webhook answered %d: %.200s", status, resp)
	}
	return sdk.Emit(map[string]any{"notified": msg.Key, "event": msg.Event, "status": status, "text": msg.Text})
}

func format(ev sdk.Event, kind, link string) message {
	if kind == "" {
		kind = ev.GVR
	}
	m := message{
		Text:  fmt.Sprintf("%s %s %s", strings.ToLower(ev.Type), kind, ev.Key()),
		Event: ev.Type, Kind: kind, Key: ev.Key(), GVR: ev.GVR, Rule: ev.Rule,
	}
	if ev.Rule != "" {
		m.Text += " (rule " + ev.Rule + ")"
	}
	if link != "" {
		esc := url.PathEscape
		m.Link = strings.NewReplacer(
			"{type}", esc(ev.Type), "{gvr}", esc(ev.GVR), "{kind}", esc(kind),
			"{namespace}", esc(ev.Namespace), "{name}", esc(ev.Name), "{key}", esc(ev.Key()),
			"{uid}", esc(ev.UID), "{rule}", esc(ev.Rule),
		).Replace(link)
		m.Text += " " + m.Link
	}
	return m
}
