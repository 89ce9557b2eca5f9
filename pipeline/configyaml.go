package pipeline

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/fastflow/fastflow/log"
)

// The decoder's primitives: each reads one YAML node into a typed value,
// or fails with a ConfigError at the node's file, line and key path.

// decoder walks YAML nodes, keeping the key path for errors.
type decoder struct {
	file  string
	lines []int          // line of each pipeline
	at    map[string]int // key path -> line, for errors found after decoding
}

func (d *decoder) errf(n *yaml.Node, path, format string, args ...any) error {
	return &ConfigError{File: d.file, Line: n.Line, Path: path, Msg: fmt.Sprintf(format, args...)}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// mapping calls fields[key] for each key of n; a key not in fields is an
// error, as is a key given twice.
func (d *decoder) mapping(n *yaml.Node, path string, fields map[string]func(*yaml.Node, string) error) error {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind != yaml.MappingNode {
		return d.errf(n, path, "want a mapping of keys to values")
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		p := join(path, k.Value)
		d.at[p] = k.Line
		fn, ok := fields[k.Value]
		if !ok {
			keys := make([]string, 0, len(fields))
			for k := range fields {
				keys = append(keys, k)
			}
			sortStrings(keys)
			return d.errf(k, p, "unknown key (valid keys: %s)", strings.Join(keys, ", "))
		}
		if seen[k.Value] {
			return d.errf(k, p, "given twice")
		}
		seen[k.Value] = true
		if v.Kind == yaml.AliasNode {
			v = v.Alias
		}
		if err := fn(v, p); err != nil {
			return err
		}
	}
	return nil
}

func (d *decoder) sequence(n *yaml.Node, path string, item func(*yaml.Node, string) error) error {
	if n.Kind != yaml.SequenceNode {
		return d.errf(n, path, "want a list")
	}
	for i, c := range n.Content {
		p := fmt.Sprintf("%s[%d]", path, i)
		d.at[p] = c.Line
		if err := item(c, p); err != nil {
			return err
		}
	}
	return nil
}

func (d *decoder) str(dst *string) func(*yaml.Node, string) error {
	return func(n *yaml.Node, p string) error {
		if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
			return d.errf(n, p, "want a string")
		}
		*dst = n.Value
		return nil
	}
}

// path decodes a field path (checkPath).
func (d *decoder) path(dst *string) func(*yaml.Node, string) error {
	return func(n *yaml.Node, p string) error {
		if err := d.str(dst)(n, p); err != nil {
			return err
		}
		if err := checkPath(*dst); err != nil {
			return d.errf(n, p, "%v", err)
		}
		return nil
	}
}

// address decodes a host:port.
func (d *decoder) address(dst *string) func(*yaml.Node, string) error {
	return func(n *yaml.Node, p string) error {
		if err := d.str(dst)(n, p); err != nil {
			return err
		}
		if _, _, err := net.SplitHostPort(*dst); err != nil {
			return d.errf(n, p, "%q is not a host:port address", *dst)
		}
		return nil
	}
}

// addresses decodes a list of host:port.
func (d *decoder) addresses(dst *[]string) func(*yaml.Node, string) error {
	return func(n *yaml.Node, p string) error {
		*dst = []string{}
		return d.sequence(n, p, func(n *yaml.Node, p string) error {
			var a string
			if err := d.address(&a)(n, p); err != nil {
				return err
			}
			*dst = append(*dst, a)
			return nil
		})
	}
}

func (d *decoder) boolean(dst *bool) func(*yaml.Node, string) error {
	return func(n *yaml.Node, p string) error {
		b, err := strconv.ParseBool(n.Value)
		if n.Kind != yaml.ScalarNode || err != nil {
			return d.errf(n, p, "want true or false, not %q", n.Value)
		}
		*dst = b
		return nil
	}
}

func (d *decoder) integer(dst *int, lo, hi int) func(*yaml.Node, string) error {
	return func(n *yaml.Node, p string) error {
		v, err := strconv.Atoi(n.Value)
		if n.Kind != yaml.ScalarNode || err != nil || v < lo || v > hi {
			return d.errf(n, p, "want an integer from %d to %d, not %q", lo, hi, n.Value)
		}
		*dst = v
		return nil
	}
}

func (d *decoder) duration(dst *time.Duration, allowZero bool) func(*yaml.Node, string) error {
	return func(n *yaml.Node, p string) error {
		v, err := log.ParseDuration(n.Value)
		switch {
		case n.Kind != yaml.ScalarNode || err != nil:
			return d.errf(n, p, "invalid duration %q (e.g. 500ms, 30s, 1m, 1h, 7d)", n.Value)
		case v < 0 || v == 0 && !allowZero:
			want := "a positive duration"
			if allowZero {
				want = "a duration of 0 or more"
			}
			return d.errf(n, p, "want %s, not %q", want, n.Value)
		}
		*dst = v
		return nil
	}
}

// topicText decodes a topic setting written as `fastflow topic create`
// takes it (7d, 10GiB, append), with that command's parser.
func topicText[T any](d *decoder, dst *T, parse func(string) (T, error)) func(*yaml.Node, string) error {
	return func(n *yaml.Node, p string) error {
		if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
			return d.errf(n, p, "want a single value")
		}
		v, err := parse(n.Value)
		if err != nil {
			return d.errf(n, p, "%v", err)
		}
		*dst = v
		return nil
	}
}

// errAt is the error at key path p, on the line of that key, or of the
// closest key enclosing it, or dflt.
func (d *decoder) errAt(p string, dflt int, format string, args ...any) *ConfigError {
	line := dflt
	for q := p; q != ""; q = parent(q) {
		if l, ok := d.at[q]; ok {
			line = l
			break
		}
	}
	return &ConfigError{File: d.file, Line: line, Path: p, Msg: fmt.Sprintf(format, args...)}
}

// parent drops the last element of a key path.
func parent(p string) string {
	i := strings.LastIndexAny(p, ".[")
	if i < 0 {
		return ""
	}
	return p[:i]
}
