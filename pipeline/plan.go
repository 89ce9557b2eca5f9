package pipeline

import (
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fastflow/fastflow/agg"
)

// plan is a pipeline compiled for execution: fields resolved to paths and
// indexes, predicates and alert rules parsed once.
type plan struct {
	cfg      *Config
	top      []string // the first names of the paths below, each once
	hasTime  bool     // false: the record timestamp is the event time
	timePath field
	unit     timeUnit
	maxOOO   int64 // ms
	lateness int64 // ms
	idle     time.Duration
	groupBy  []field
	fields   []field // numeric fields, by index
	preds    []predicate
	windows  agg.Windows
	layout   *agg.Layout
	alerts   []alertRule
	log      *slog.Logger
}

func (p *plan) logger() *slog.Logger {
	if p.log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return p.log
}

type timeUnit uint8

const (
	unitMs timeUnit = iota
	unitS
	unitUs
	unitNs
	unitRFC3339
)

// op is a comparison operator.
type op uint8

const (
	opEq op = iota
	opNe
	opLt
	opLe
	opGt
	opGe
)

var opNames = []string{"==", "!=", "<", "<=", ">", ">="}

func (o op) String() string { return opNames[o] }

// cmp applies o to the result of a three-way comparison.
func (o op) cmp(c int) bool {
	switch o {
	case opEq:
		return c == 0
	case opNe:
		return c != 0
	case opLt:
		return c < 0
	case opLe:
		return c <= 0
	case opGt:
		return c > 0
	}
	return c >= 0
}

func (o op) num(a, b float64) bool {
	switch o {
	case opEq:
		return a == b
	case opNe:
		return a != b
	case opLt:
		return a < b
	case opLe:
		return a <= b
	case opGt:
		return a > b
	}
	return a >= b
}

// literal kinds of a where predicate.
type litKind uint8

const (
	litString litKind = iota
	litNumber
	litBool
	litNull
)

// field is where a record holds a value the pipeline reads: the first
// name of its dotted path, as an index into plan.top, and the names below
// it. The extractor finds every top-level name in one pass over the
// record's object.
type field struct {
	top  int
	rest []string
}

// fieldOf resolves a dotted path, adding its first name to p.top.
func (p *plan) fieldOf(path []string) field {
	i := slices.Index(p.top, path[0])
	if i < 0 {
		i = len(p.top)
		p.top = append(p.top, path[0])
	}
	return field{top: i, rest: path[1:]}
}

// predicate is a compiled where: one field compared with a literal. A
// missing field, or a field of another type than the literal, makes it
// false (SQL's rule: a comparison with NULL is not true).
type predicate struct {
	text  string
	path  []string
	field field // path, resolved by compile
	op    op
	kind  litKind
	s     []byte // a string literal; a number literal's digits, if it is an integer (intText)
	plain bool   // s has no backslash: a string whose JSON text is s is s
	f     float64
	b     bool
	// A number literal 2^53 or more in magnitude is where float64 numbers
	// stop telling integers apart: there, a value whose float64 is f is
	// compared exactly (exactCmp). litInt: the literal is an integer, of
	// sign litNeg and digits s. (Beside b, in what would be padding: the
	// size of a predicate, which the extractor indexes per event, stays.)
	big, litInt, litNeg bool
}

// alertRule is a compiled alert: metric op threshold, for N windows.
type alertRule struct {
	name      string
	severity  string
	metric    int
	op        op
	threshold float64
	forN      int
}

type compileError struct {
	path, msg string
}

func (e *compileError) Error() string { return e.path + ": " + e.msg }

func cerr(path, format string, args ...any) error {
	return &compileError{path: path, msg: fmt.Sprintf(format, args...)}
}

func splitPath(f string) []string { return strings.Split(f, ".") }

// checkPath refuses a field path with an empty name ("a..b", ".a", "a."):
// a slip of the pen rather than a JSON name "".
func checkPath(f string) error {
	if f != "" && slices.Contains(splitPath(f), "") {
		return fmt.Errorf("field %q has an empty name (a path's names are separated by single dots)", f)
	}
	return nil
}

// compile turns a checked Config into a plan.
func compile(c *Config) (*plan, error) {
	p := &plan{cfg: c, idle: 30 * time.Second}
	if t := c.Time; t != nil {
		if t.Field != "" {
			p.hasTime, p.timePath = true, p.fieldOf(splitPath(t.Field))
		}
		p.unit = map[string]timeUnit{"ms": unitMs, "s": unitS, "us": unitUs, "ns": unitNs, "rfc3339": unitRFC3339}[t.Unit]
		p.maxOOO = t.MaxOutOfOrder.Milliseconds()
		p.lateness = t.AllowedLateness.Milliseconds()
		p.idle = t.IdleTimeout
	}
	for _, g := range c.GroupBy {
		p.groupBy = append(p.groupBy, p.fieldOf(splitPath(g)))
	}
	switch w := c.Window; w.Type {
	case "tumbling":
		p.windows = agg.Windows{Kind: agg.Tumbling, Size: w.Size.Milliseconds(), Advance: w.Size.Milliseconds()}
	case "hopping":
		p.windows = agg.Windows{Kind: agg.Hopping, Size: w.Size.Milliseconds(), Advance: w.Advance.Milliseconds()}
	case "session":
		p.windows = agg.Windows{Kind: agg.Session, Gap: w.Gap.Milliseconds()}
	}
	if err := p.windows.Validate(); err != nil {
		return nil, cerr("window", "%v", err)
	}
	names := map[string]int{}
	for i, m := range c.Metrics {
		if _, dup := names[m.Name]; dup {
			return nil, cerr(fmt.Sprintf("metrics[%d].name", i), "duplicate metric %q", m.Name)
		}
		names[m.Name] = i
	}
	fieldIdx := map[string]int{}
	predIdx := map[string]int{}
	var metrics []agg.Metric
	for i, m := range c.Metrics {
		kind, _ := agg.ParseKind(m.Agg)
		am := agg.Metric{Name: m.Name, Kind: kind, Field: -1, Where: -1, Q: m.Q, Of: -1, Over: -1}
		if m.Field != "" {
			f, ok := fieldIdx[m.Field]
			if !ok {
				f = len(p.fields)
				if f == 64 {
					return nil, cerr(fmt.Sprintf("metrics[%d].field", i), "more than 64 distinct fields")
				}
				fieldIdx[m.Field] = f
				p.fields = append(p.fields, p.fieldOf(splitPath(m.Field)))
			}
			am.Field = f
		}
		if m.Where != "" {
			w, ok := predIdx[m.Where]
			if !ok {
				pr, err := parsePredicate(m.Where)
				if err != nil {
					return nil, cerr(fmt.Sprintf("metrics[%d].where", i), "%v", err)
				}
				w = len(p.preds)
				if w == 64 {
					return nil, cerr(fmt.Sprintf("metrics[%d].where", i), "more than 64 distinct where expressions")
				}
				predIdx[m.Where] = w
				pr.field = p.fieldOf(pr.path)
				p.preds = append(p.preds, pr)
			}
			am.Where = w
		}
		ref := func(key, name string) (int, error) {
			j, ok := names[name]
			if !ok {
				return 0, cerr(fmt.Sprintf("metrics[%d].%s", i, key), "no metric named %q", name)
			}
			if j == i {
				return 0, cerr(fmt.Sprintf("metrics[%d].%s", i, key), "a metric cannot refer to itself")
			}
			return j, nil
		}
		var err error
		if m.Of != "" {
			if am.Of, err = ref("of", m.Of); err != nil {
				return nil, err
			}
		}
		if m.Over != "" {
			if am.Over, err = ref("over", m.Over); err != nil {
				return nil, err
			}
		}
		metrics = append(metrics, am)
	}
	var err error
	if p.layout, err = agg.NewLayout(metrics); err != nil {
		return nil, cerr("metrics", "%v", err)
	}
	seen := map[string]bool{}
	for i, a := range c.Alerts {
		if seen[a.Name] {
			return nil, cerr(fmt.Sprintf("alerts[%d].name", i), "duplicate alert %q", a.Name)
		}
		seen[a.Name] = true
		r, err := parseWhen(a.When, names)
		if err != nil {
			return nil, cerr(fmt.Sprintf("alerts[%d].when", i), "%v", err)
		}
		r.name, r.severity, r.forN = a.Name, a.Severity, a.For
		p.alerts = append(p.alerts, r)
	}
	return p, nil
}

// lexer for where and when: FIELD OP LITERAL.
func splitExpr(s string) (lhs string, o op, rhs string, err error) {
	s = strings.TrimSpace(s)
	i := 0
	for i < len(s) && (isIdent(s[i]) || s[i] == '.') {
		i++
	}
	lhs = s[:i]
	if lhs == "" {
		return "", 0, "", fmt.Errorf("%q: want FIELD OP VALUE, e.g. status == \"error\"", s)
	}
	rest := strings.TrimLeft(s[i:], " \t")
	// Two-character operators before their one-character prefixes.
	for _, o := range []op{opEq, opNe, opLe, opGe, opLt, opGt} {
		if strings.HasPrefix(rest, o.String()) {
			return lhs, o, strings.TrimSpace(rest[len(o.String()):]), nil
		}
	}
	return "", 0, "", fmt.Errorf("%q: missing or unknown operator after %q (want ==, !=, <, <=, >, >=)", s, lhs)
}

func isIdent(c byte) bool {
	return c == '_' || c == '-' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func parsePredicate(s string) (predicate, error) {
	lhs, o, rhs, err := splitExpr(s)
	if err != nil {
		return predicate{}, err
	}
	if err := checkPath(lhs); err != nil {
		return predicate{}, fmt.Errorf("%q: %v", s, err)
	}
	p := predicate{text: s, path: splitPath(lhs), op: o}
	switch {
	case rhs == "":
		return p, fmt.Errorf("%q: missing value after %s", s, o)
	case rhs[0] == '"' || rhs[0] == '\'':
		v, err := unquote(rhs)
		if err != nil {
			return p, fmt.Errorf("%q: %v", s, err)
		}
		p.kind, p.s, p.plain = litString, []byte(v), !strings.Contains(v, `\`)
	case rhs == "true" || rhs == "false":
		p.kind, p.b = litBool, rhs == "true"
	case rhs == "null":
		p.kind = litNull
	default:
		f, err := strconv.ParseFloat(rhs, 64)
		if err != nil {
			return p, fmt.Errorf("%q: the value must be a quoted string, a number, true, false or null, not %s", s, rhs)
		}
		p.kind, p.f = litNumber, f
		p.big = math.Abs(f) >= exactInts
		p.litNeg, p.s, p.litInt = intText([]byte(rhs))
	}
	if (p.kind == litBool || p.kind == litNull) && o != opEq && o != opNe {
		return p, fmt.Errorf("%q: %s compares only with == and !=", s, rhs)
	}
	return p, nil
}

// unquote reads a "..." or '...' literal with \\, \" and \' escapes.
func unquote(s string) (string, error) {
	q := s[0]
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s):
			i++
			b.WriteByte(s[i])
		case c == q:
			if i != len(s)-1 {
				return "", fmt.Errorf("unexpected text after the closing quote")
			}
			return b.String(), nil
		default:
			b.WriteByte(c)
		}
	}
	return "", fmt.Errorf("unterminated string")
}

func parseWhen(s string, metrics map[string]int) (alertRule, error) {
	lhs, o, rhs, err := splitExpr(s)
	if err != nil {
		return alertRule{}, fmt.Errorf("%v (e.g. error_rate > 0.05)", err)
	}
	m, ok := metrics[lhs]
	if !ok {
		return alertRule{}, fmt.Errorf("%q: no metric named %q", s, lhs)
	}
	f, err := strconv.ParseFloat(rhs, 64)
	if err != nil {
		return alertRule{}, fmt.Errorf("%q: the threshold must be a number, not %q", s, rhs)
	}
	return alertRule{metric: m, op: o, threshold: f}, nil
}
