// Package demo is fastflow's demo: an embedded default configuration (the
// api-health pipeline) and a generator of API events with realistic
// latencies and scripted incidents. `fastflow demo` serves it with live
// traffic; `fastflow bench` uses the same generator, seeded, as its load.
package demo

import (
	_ "embed"
	"math"
	"math/rand/v2"
	"strconv"
	"time"
)

// Config is the demo's pipelines file.
//
//go:embed api-health.yaml
var Config []byte

// Service is a generated service: its latency (log-normal, in ms) and its
// usual error rate.
type Service struct {
	Name        string
	MedianMs    float64
	Sigma       float64 // of the log-normal
	ErrorRate   float64
	Endpoint    string
	WeightShare int // relative share of the traffic
}

// Services are the demo's services.
var Services = []Service{
	{"payments", 120, 0.45, 0.01, "/api/v1/payments", 3},
	{"search", 60, 0.5, 0.005, "/api/v1/search", 5},
	{"auth", 25, 0.35, 0.003, "/api/v1/login", 4},
	{"checkout", 200, 0.4, 0.01, "/api/v1/checkout", 2},
	{"inventory", 40, 0.6, 0.008, "/api/v1/stock", 3},
}

// Incident changes a service for a span of event time after the
// generator's start.
type Incident struct {
	Service       string
	From, To      time.Duration
	ErrorRate     float64 // 0: unchanged
	LatencyFactor float64 // 0: unchanged
}

// Incidents are the demo's scripted incidents: an error burst on payments,
// then a latency spike on search. With for: 2 windows, high-error-rate
// fires when the window of minute 5 closes and resolves with minute 7;
// slow-p95 fires with minute 10 and resolves with minute 13.
var Incidents = []Incident{
	{Service: "payments", From: 4 * time.Minute, To: 7 * time.Minute, ErrorRate: 0.3},
	{Service: "search", From: 10 * time.Minute, To: 13 * time.Minute, LatencyFactor: 25},
}

// Generator makes events. It is deterministic for a seed. It cannot be
// used from concurrent goroutines.
type Generator struct {
	Start     time.Time // event time of the beginning
	Incidents []Incident
	rng       *rand.Rand
	total     int
}

// NewGenerator returns a generator starting at event time start.
func NewGenerator(start time.Time, seed uint64) *Generator {
	g := &Generator{Start: start, Incidents: Incidents, rng: rand.New(rand.NewPCG(seed, 0x5eed))}
	for _, s := range Services {
		g.total += s.WeightShare
	}
	return g
}

// Event appends one event at event time t, jittered by up to ±jitter, as a
// JSON object, and returns dst and the service name.
func (g *Generator) Event(dst []byte, t time.Time, jitter time.Duration) ([]byte, string) {
	pick := g.rng.IntN(g.total)
	var s Service
	for _, c := range Services {
		if pick < c.WeightShare {
			s = c
			break
		}
		pick -= c.WeightShare
	}
	at := t.Sub(g.Start)
	errRate, factor := s.ErrorRate, 1.0
	for _, in := range g.Incidents {
		if in.Service == s.Name && at >= in.From && at < in.To {
			if in.ErrorRate > 0 {
				errRate = in.ErrorRate
			}
			if in.LatencyFactor > 0 {
				factor = in.LatencyFactor
			}
		}
	}
	rt := s.MedianMs * math.Exp(g.rng.NormFloat64()*s.Sigma) * factor
	status := "ok"
	if g.rng.Float64() < errRate {
		status = "error"
		rt *= 0.3 // errors fail fast
	}
	ts := t.UnixMilli()
	if jitter > 0 {
		ts += g.rng.Int64N(2*int64(jitter/time.Millisecond)+1) - int64(jitter/time.Millisecond)
	}
	dst = append(dst, `{"ts":`...)
	dst = strconv.AppendInt(dst, ts, 10)
	dst = append(dst, `,"service":"`...)
	dst = append(dst, s.Name...)
	dst = append(dst, `","endpoint":"`...)
	dst = append(dst, s.Endpoint...)
	dst = append(dst, `","status":"`...)
	dst = append(dst, status...)
	dst = append(dst, `","response_time":`...)
	dst = strconv.AppendFloat(dst, math.Round(rt*10)/10, 'f', -1, 64)
	dst = append(dst, '}')
	return dst, s.Name
}
