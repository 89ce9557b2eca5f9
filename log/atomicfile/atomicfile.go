// Package atomicfile replaces small files so that a crash leaves either
// the old or the new content, never a mix, and the new content survives
// power loss once Write returns: write a temporary file, fsync it, rename
// it over the target, fsync the directory. The log keeps its partition
// state and group offsets this way, pipelines their checkpoints.
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
)

// TempSuffix names the temporary file Write writes before it renames it
// to path: path+TempSuffix. A crash may leave one; the next Write of path
// replaces it, and whoever owns the directory may delete it at start.
const TempSuffix = ".tmp"

// Write replaces path with data, atomically and durably.
func Write(path string, data []byte) error {
	tmp := path + TempSuffix
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return SyncDir(filepath.Dir(path))
}

// SyncDir fsyncs a directory, making the creation, removal or renaming of
// its entries durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}
