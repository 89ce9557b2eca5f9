package atomicfile_test

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/fastflow/fastflow/log/atomicfile"
)

// A reader sees the old content or the new, whole, never a mix: a crash
// during Write leaves the old.
func ExampleWrite() {
	dir, _ := os.MkdirTemp("", "atomicfile-example-")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "state")
	atomicfile.Write(path, []byte(`{"log_start_offset":0}`))
	if err := atomicfile.Write(path, []byte(`{"log_start_offset":42}`)); err != nil {
		fmt.Println(err)
	}
	b, _ := os.ReadFile(path)
	fmt.Println(string(b))
	// Output: {"log_start_offset":42}
}
