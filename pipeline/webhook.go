package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// webhookQueue bounds the alerts waiting for delivery; beyond it alerts
// are dropped and counted, so that a dead endpoint never slows a pipeline.
const webhookQueue = 1024

// webhook delivers alert transitions to an HTTP endpoint, in Alertmanager's
// v2 format (POST /api/v2/alerts) or as the plain JSON line. Delivery is
// retried with exponential backoff. For Alertmanager, alerts that fire are
// sent again every minute until they resolve, as Prometheus does, so that
// Alertmanager does not time them out.
type webhook struct {
	url     string
	format  string
	p       *plan
	labels  []string // alertmanager: the group-by fields' label names
	client  *http.Client
	logger  *slog.Logger
	queue   chan []byte
	dropped atomic.Int64
	sent    atomic.Int64

	mu     sync.Mutex
	firing map[string]firingAlert // alertmanager: alerts firing now, by identity

	closeWait time.Duration    // how long close keeps delivering
	now       func() time.Time // wall time

	ctx    context.Context
	cancel context.CancelFunc
	stop   chan struct{} // closed by close: deliver what is queued, then end
	closed sync.Once
	done   chan struct{}
}

func newWebhook(p *plan, s SinkConfig, logger *slog.Logger) *webhook {
	ctx, cancel := context.WithCancel(context.Background())
	h := &webhook{url: s.URL, format: s.Format, p: p, logger: logger, labels: LabelNames(p.cfg.GroupBy, "alertname", "severity", "pipeline"),
		client: &http.Client{Timeout: 10 * time.Second},
		queue:  make(chan []byte, webhookQueue), firing: map[string]firingAlert{},
		closeWait: 5 * time.Second, now: time.Now, ctx: ctx, cancel: cancel, stop: make(chan struct{}), done: make(chan struct{})}
	go h.run()
	return h
}

type firingAlert struct {
	body     []byte
	startsAt string
}

// amAlert is an alert in Alertmanager's v2 API (postableAlert).
type amAlert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     string            `json:"startsAt"`
	EndsAt       string            `json:"endsAt,omitempty"`
	GeneratorURL string            `json:"generatorURL,omitempty"`
}

// enqueue queues a transition without blocking.
func (h *webhook) enqueue(line []byte, a *alertEvent) {
	var body []byte
	if h.format == "alertmanager" {
		al := h.amAlert(a)
		id := fmt.Sprint(al.Labels)
		h.mu.Lock()
		if a.firing {
			body, _ = json.Marshal([]amAlert{al})
			h.firing[id] = firingAlert{body, al.StartsAt}
		} else {
			if f, ok := h.firing[id]; ok {
				al.StartsAt = f.startsAt // the same alert, now resolved
			}
			body, _ = json.Marshal([]amAlert{al})
			delete(h.firing, id)
		}
		h.mu.Unlock()
	} else {
		body = bytes.Clone(line)
	}
	select {
	case h.queue <- body:
	default:
		h.dropped.Add(1)
	}
}

func (h *webhook) amAlert(a *alertEvent) amAlert {
	labels := map[string]string{
		"alertname": a.rule.name,
		"severity":  a.rule.severity,
		"pipeline":  h.p.cfg.Name,
	}
	rest := a.key
	for i := range h.p.cfg.GroupBy {
		v := rest
		if j := indexNUL(rest); j >= 0 {
			v, rest = rest[:j], rest[j+1:]
		}
		if s, ok := LabelValue([]byte(v)); ok {
			labels[h.labels[i]] = s
		}
	}
	metric := h.p.cfg.Metrics[a.rule.metric].Name
	value := "null"
	if a.value.OK {
		value = string(appendFloat(nil, a.value.V))
	}
	al := amAlert{
		Labels: labels,
		Annotations: map[string]string{
			"summary":      fmt.Sprintf("%s %s %s on %s", metric, a.rule.op, strconv.FormatFloat(a.rule.threshold, 'g', -1, 64), h.p.cfg.Name),
			"metric":       metric,
			"value":        value,
			"threshold":    strconv.FormatFloat(a.rule.threshold, 'g', -1, 64),
			"window_start": time.UnixMilli(a.start).UTC().Format(time.RFC3339Nano),
			"window_end":   time.UnixMilli(a.end).UTC().Format(time.RFC3339Nano),
		},
		// Alertmanager lives in wall time (as Prometheus, which sends its
		// evaluation times); the windows' event times are annotations.
		StartsAt: h.now().UTC().Format(time.RFC3339Nano),
	}
	if !a.firing {
		// Resolved: Alertmanager resolves an alert whose endsAt has passed.
		al.EndsAt = al.StartsAt
	}
	return al
}

func (h *webhook) run() {
	defer close(h.done)
	resend := time.NewTicker(time.Minute)
	defer resend.Stop()
	for {
		select {
		case body := <-h.queue:
			h.deliver(body)
		case <-resend.C:
			h.mu.Lock()
			var again [][]byte
			for _, f := range h.firing {
				again = append(again, f.body)
			}
			h.mu.Unlock()
			for _, b := range again {
				h.deliver(b)
			}
		case <-h.stop:
			for {
				select {
				case body := <-h.queue:
					h.deliver(body)
				default:
					return
				}
			}
		case <-h.ctx.Done():
			return
		}
	}
}

// deliver posts body, retrying with exponential backoff (100ms doubling to
// 10s, 8 attempts); a body that never gets through is dropped and counted.
func (h *webhook) deliver(body []byte) {
	backoff := 100 * time.Millisecond
	for attempt := 0; attempt < 8; attempt++ {
		err := h.post(body)
		if err == nil {
			h.sent.Add(1)
			return
		}
		if h.ctx.Err() != nil { // closed, after its wait: no retry to announce
			h.dropped.Add(1)
			return
		}
		if attempt == 0 {
			h.logger.Warn("webhook delivery failed; retrying", "url", h.url, "err", err)
		}
		select {
		case <-time.After(backoff):
		case <-h.ctx.Done():
			h.dropped.Add(1)
			return
		}
		backoff = min(2*backoff, 10*time.Second)
	}
	h.logger.Error("webhook delivery failed; alert dropped", "url", h.url)
	h.dropped.Add(1)
}

func (h *webhook) post(body []byte) error {
	req, err := http.NewRequestWithContext(h.ctx, http.MethodPost, h.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := h.client.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s", resp.Status)
	}
	return nil
}

// close delivers what is queued, giving up after a few seconds (what is
// left is counted as dropped), and stops.
func (h *webhook) close() { h.closed.Do(h.closeOnce) }

func (h *webhook) closeOnce() {
	// The delivering goroutine drains the queue — including a body it is
	// in the middle of posting — bounded by closeWait.
	giveUp := time.AfterFunc(h.closeWait, h.cancel)
	defer giveUp.Stop()
	close(h.stop)
	<-h.done
	h.cancel()
	for {
		select {
		case <-h.queue:
			h.dropped.Add(1)
		default:
			return
		}
	}
}
