package pipeline

import (
	"hash/maphash"
	"sync"
)

// keyTable interns group keys (the group-by values as JSON, NUL-separated)
// to small integer IDs shared by all workers. Workers look keys up in a
// cache of their own and take the table's lock only for a key they have
// not seen: once per key per worker, never per event.
//
// It also remembers the source partition each key's events come from, so
// that a pipeline's state can be split by partition when partitions move
// between instances (a Kafka source): that takes every key's events on one
// partition, as producing with the group-by fields as the record key
// gives. A key seen on two partitions is counted in spread.
type keyTable struct {
	mu      sync.Mutex
	ids     map[string]uint32
	keys    []string
	part    []int32 // the partition a key's events come from; noPartition before any
	spread  []bool  // seen on more than one partition
	nSpread int
}

// noPartition: a key restored from a checkpoint before any event.
const noPartition = -1

func newKeyTable() *keyTable { return &keyTable{ids: map[string]uint32{}} }

func (kt *keyTable) intern(k string) uint32 {
	kt.mu.Lock()
	defer kt.mu.Unlock()
	return kt.internLocked(k)
}

func (kt *keyTable) internLocked(k string) uint32 {
	id, ok := kt.ids[k]
	if !ok {
		id = uint32(len(kt.keys))
		kt.ids[k] = id
		kt.keys = append(kt.keys, k)
		kt.part = append(kt.part, noPartition)
		kt.spread = append(kt.spread, false)
	}
	return id
}

// internAt interns k, seen on partition p.
func (kt *keyTable) internAt(k string, p int32) uint32 {
	kt.mu.Lock()
	defer kt.mu.Unlock()
	id := kt.internLocked(k)
	kt.seenLocked(id, p)
	return id
}

// seen records that key id had an event on partition p.
func (kt *keyTable) seen(id uint32, p int32) {
	kt.mu.Lock()
	defer kt.mu.Unlock()
	kt.seenLocked(id, p)
}

func (kt *keyTable) seenLocked(id uint32, p int32) {
	switch cur := kt.part[id]; {
	case cur == noPartition:
		kt.part[id] = p
	case cur != p && !kt.spread[id]:
		kt.spread[id] = true
		kt.nSpread++
	}
}

// partition returns the partition key id's events come from, or
// noPartition.
func (kt *keyTable) partition(id uint32) int32 {
	kt.mu.Lock()
	defer kt.mu.Unlock()
	return kt.part[id]
}

// spreadKeys is how many keys had events on more than one partition.
func (kt *keyTable) spreadKeys() int {
	kt.mu.Lock()
	defer kt.mu.Unlock()
	return kt.nSpread
}

// key returns the encoded key of id.
func (kt *keyTable) key(id uint32) string {
	kt.mu.Lock()
	defer kt.mu.Unlock()
	return kt.keys[id]
}

// keyCache is a worker's view of the table.
type keyCache struct {
	kt  *keyTable
	ids map[string]cachedKey
	// A direct-mapped cache in front of ids, by a hash of the key's bytes:
	// a hit costs a hash and a compare, where the map costs a hash and a
	// probe. Keys that share a slot only fall through to the map.
	slots [keySlots]keySlot
	seed  maphash.Seed
}

const keySlots = 256

type keySlot struct {
	key  []byte
	id   uint32
	part int32
}

type cachedKey struct {
	id   uint32
	part int32 // the partition this worker last saw it on
}

// id returns the ID of encoded key b, seen on partition p. The lookup with
// string(b) does not allocate; a key new to this worker allocates once.
func (c *keyCache) id(b []byte, p int32) uint32 {
	s := &c.slots[maphash.Bytes(c.seed, b)%keySlots]
	if s.key != nil && s.part == p && string(b) == string(s.key) {
		return s.id
	}
	id := c.lookup(b, p)
	s.key, s.id, s.part = append(s.key[:0], b...), id, p
	return id
}

// invalidKey is the ID of a key whose text is not JSON (validKey): its
// events are rejected as invalid_json. It is never interned.
const invalidKey = ^uint32(0)

// lookup is id past the slots: the map, and the table for a new key.
func (c *keyCache) lookup(b []byte, p int32) uint32 {
	if ck, ok := c.ids[string(b)]; ok {
		if ck.part != p && ck.id != invalidKey {
			// Rare unless keys are spread over partitions.
			c.kt.seen(ck.id, p)
			c.ids[string(b)] = cachedKey{ck.id, p}
		}
		return ck.id
	}
	k := string(b)
	id := invalidKey
	if canonical, ok := canonicalKey(b); ok {
		id = c.kt.internAt(canonical, p)
	}
	c.ids[k] = cachedKey{id, p}
	return id
}
