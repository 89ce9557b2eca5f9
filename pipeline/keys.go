package pipeline

import "sync"

// keyTable interns group keys (the group-by values as JSON, NUL-separated)
// to small integer IDs shared by all workers. Workers look keys up in a
// cache of their own and take the table's lock only for a key they have
// not seen: once per key per worker, never per event.
type keyTable struct {
	mu   sync.Mutex
	ids  map[string]uint32
	keys []string
}

func newKeyTable() *keyTable { return &keyTable{ids: map[string]uint32{}} }

func (kt *keyTable) intern(k string) uint32 {
	kt.mu.Lock()
	defer kt.mu.Unlock()
	id, ok := kt.ids[k]
	if !ok {
		id = uint32(len(kt.keys))
		kt.ids[k] = id
		kt.keys = append(kt.keys, k)
	}
	return id
}

// key returns the encoded key of id.
func (kt *keyTable) key(id uint32) string {
	kt.mu.Lock()
	defer kt.mu.Unlock()
	return kt.keys[id]
}

// keyCache is a worker's view of the table.
type keyCache struct {
	kt   *keyTable
	ids  map[string]uint32
	last []byte // the previous key, and its ID: events of a partition
	lid  uint32 // often come in runs of one key
}

// id returns the ID of encoded key b. The lookup with string(b) does not
// allocate; a key new to this worker allocates once.
func (c *keyCache) id(b []byte) uint32 {
	if c.last != nil && string(b) == string(c.last) {
		return c.lid
	}
	if id, ok := c.ids[string(b)]; ok {
		c.last, c.lid = append(c.last[:0], b...), id
		return id
	}
	k := string(b)
	id := c.kt.intern(k)
	c.ids[k] = id
	c.last, c.lid = append(c.last[:0], b...), id
	return id
}
