package demo_test

import (
	"testing"

	"github.com/fastflow/fastflow/pipeline"
	"github.com/fastflow/fastflow/pipeline/demo"
)

// TestConfigBoundsTheDisk: the demo's events topic keeps a bounded size
// per partition, so a demo left running (0.8 GB an hour at its default
// rate) does not fill the disk: the default retention, a week, let it
// grow to ~130 GB.
func TestConfigBoundsTheDisk(t *testing.T) {
	f, err := pipeline.Parse("api-health.yaml", demo.Config)
	if err != nil {
		t.Fatal(err)
	}
	for _, td := range f.Topics {
		if td.Name == "events" {
			if td.Config.RetentionBytes <= 0 || td.Config.RetentionBytes > 1<<30 {
				t.Fatalf("events topic: retention_bytes %d", td.Config.RetentionBytes)
			}
			return
		}
	}
	t.Fatal("the demo config creates no events topic")
}
