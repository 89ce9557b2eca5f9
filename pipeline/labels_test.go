package pipeline

import (
	"slices"
	"testing"
)

func TestLabelNames(t *testing.T) {
	got := LabelNames([]string{"host.name", "host_name", "__x", "1a", "severity", "a-b", "é"}, "alertname", "severity", "pipeline")
	want := []string{"host_name", "host_name_2", "f__x", "_a", "severity_2", "a_b", "f__"}
	if !slices.Equal(got, want) {
		t.Fatalf("LabelNames = %q, want %q", got, want)
	}
}
