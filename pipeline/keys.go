package pipeline

import (
	"hash/maphash"
	"slices"
	"sync"
	"sync/atomic"
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
//
// A following pipeline grouped by an unbounded field (a user ID, a
// request path) sees new keys forever, so the table forgets keys nothing
// holds any more, in two steps (Forgetting keys, below): the coordinator
// marks them dying, and frees them once every worker has dropped them from
// its cache; a worker that meets a dying key again revives it.
type keyTable struct {
	mu      sync.Mutex
	ids     map[string]uint32
	keys    []string
	part    []int32 // the partition a key's events come from; noPartition before any
	spread  []bool  // seen on more than one partition
	nSpread int

	free      []uint32 // freed IDs, taken again by new keys
	dying     []bool   // by ID: marked by the latest sweep, not met since
	dyingList []uint32
	peak      int // len(ids) at its largest since the map was last copied (compact)
	// epoch counts sweeps; workers drop the dying keys from their caches
	// when they see it change (at the start of a round) and report the
	// epoch they have seen in their round messages.
	epoch atomic.Uint64
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
	switch {
	case ok:
		kt.dying[id] = false // met again: no longer a candidate
	case len(kt.free) > 0:
		id = kt.free[len(kt.free)-1]
		kt.free = kt.free[:len(kt.free)-1]
		kt.ids[k], kt.keys[id] = id, k
	default:
		id = uint32(len(kt.keys))
		kt.ids[k] = id
		kt.keys = append(kt.keys, k)
		kt.part = append(kt.part, noPartition)
		kt.spread = append(kt.spread, false)
		kt.dying = append(kt.dying, false)
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

// partitionOf returns the partition the events of the key whose text is k
// come from, or noPartition (also for a key not in the table). Unlike
// intern it leaves a dying key dying: splitting a checkpoint by partition
// does not meet keys.
func (kt *keyTable) partitionOf(k string) int32 {
	kt.mu.Lock()
	defer kt.mu.Unlock()
	if id, ok := kt.ids[k]; ok {
		return kt.part[id]
	}
	return noPartition
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

// Forgetting keys. A key can go once nothing holds it: no window or
// session of it is open, no partition holds a session span of it, and
// none of its alert states would differ from a new one's (not firing, its
// latest window not meeting the condition) — then a new event of the key
// starts exactly as a key never seen does. The coordinator knows that
// (after merging a round) but the workers run rounds ahead of it and
// cache IDs, so an ID cannot be freed, and given to another key, the
// moment the coordinator finds it unused:
//
//  1. sweep: the coordinator marks the unused keys dying and moves the
//     epoch on;
//  2. each worker, at the start of its next round, drops every cached key
//     that is dying (so that it interns the key again if it meets it:
//     which revives it) and reports the epoch in that round's message;
//  3. release: once the coordinator has merged a round carrying the epoch
//     from every worker, no worker holds a dying key but through intern.
//     The coordinator frees those still dying and still unused (a worker's
//     rounds before it dropped them may have brought state).
//
// Results do not change: forgetting only frees what a new key would start
// without.

// size is the number of keys held.
func (kt *keyTable) size() int {
	kt.mu.Lock()
	defer kt.mu.Unlock()
	return len(kt.keys) - len(kt.free)
}

// idSpace is one past the highest ID given so far.
func (kt *keyTable) idSpace() int {
	kt.mu.Lock()
	defer kt.mu.Unlock()
	return len(kt.keys)
}

// sweep marks the keys that used does not report dying, and starts a new
// epoch. It returns how many it marked (none: no new epoch).
//
// It takes the lock for sweepChunk IDs at a time, so that a worker
// interning a new key waits for a chunk (~15 µs), not for the whole table
// (~3.6 ns a key, BenchmarkKeyTableSweep: 3.6 ms at a million). Nothing is lost
// between chunks: only the coordinator, which sweeps, frees IDs; keys
// interned meanwhile take IDs past the sweep's range, or revive a key the
// sweep already marked, exactly as if they had come after a sweep under
// one lock; and the epoch, which tells workers to drop dying keys, moves
// on only once every chunk is marked.
func (kt *keyTable) sweep(used func(id uint32) bool) int {
	kt.mu.Lock()
	kt.dyingList = kt.dyingList[:0]
	n := len(kt.keys)
	kt.mu.Unlock()
	for lo := 0; lo < n; lo += sweepChunk {
		kt.mu.Lock()
		for id := lo; id < min(lo+sweepChunk, n); id++ {
			// "" is a freed ID (or the one key of a pipeline without
			// group_by, which stays).
			if kt.keys[id] != "" && !used(uint32(id)) {
				kt.dying[id] = true
				kt.dyingList = append(kt.dyingList, uint32(id))
			}
		}
		kt.mu.Unlock()
	}
	if len(kt.dyingList) > 0 {
		kt.epoch.Add(1)
	}
	return len(kt.dyingList)
}

// sweepChunk is how many IDs a sweep marks under one hold of the lock.
const sweepChunk = 4096

// release frees the keys of the last sweep that are still dying (no
// worker met them since) and still unused, and returns their IDs. Every
// worker must have dropped them from its cache (seen the sweep's epoch).
func (kt *keyTable) release(used func(id uint32) bool) []uint32 {
	kt.mu.Lock()
	defer kt.mu.Unlock()
	before := len(kt.ids)
	freed := kt.dyingList[:0]
	for _, id := range kt.dyingList {
		if !kt.dying[id] {
			continue
		}
		kt.dying[id] = false
		if used(id) {
			continue
		}
		delete(kt.ids, kt.keys[id])
		kt.keys[id], kt.part[id] = "", noPartition
		if kt.spread[id] {
			kt.spread[id] = false
			kt.nSpread--
		}
		freed = append(freed, id)
	}
	kt.free = append(kt.free, freed...)
	kt.dyingList = nil // its memory is freed's, the caller's now
	kt.ids = compact(kt.ids, &kt.peak, before)
	return freed
}

// byID returns s long enough to be indexed by key ID id, new elements
// zero. Per-key state the coordinator and workers look up per window or
// event is held in slices by key ID (dense: keyTable reuses forgotten
// IDs) rather than in maps, which probe and miss the cache.
func byID[T any](s []T, id uint32) []T {
	if n := int(id) + 1; n > len(s) {
		old := len(s)
		s = slices.Grow(s, n-old)[:n]
		clear(s[old:])
	}
	return s
}

// compact returns m after deletions, or a copy of it sized for what it
// holds once they have left it at half its largest size or less: a Go map
// keeps the memory of its largest size (and maps.Clone copies that size).
// before is len(m) before the deletions, peak the largest len(m) seen
// since the last copy: maps grow between deletions, so their largest sizes
// are the sizes before deletions.
func compact[K comparable, V any](m map[K]V, peak *int, before int) map[K]V {
	*peak = max(*peak, before)
	if len(m) > *peak/2 {
		return m
	}
	c := make(map[K]V, len(m))
	for k, v := range m {
		c[k] = v
	}
	*peak = len(c)
	return c
}

// keyCache is a worker's view of the table.
type keyCache struct {
	kt  *keyTable
	ids map[string]cachedKey
	// epoch is the table's sweep epoch the cache has dropped the dying
	// keys of; peak is len(ids) at its largest since it was last copied.
	epoch uint64
	peak  int
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

// sync drops the keys the table's latest sweep marked dying, if the cache
// has not yet, and the texts it found invalid (they are only cached). It
// returns the epoch the cache is at.
func (c *keyCache) sync() uint64 {
	e := c.kt.epoch.Load()
	if e == c.epoch {
		return e
	}
	before := len(c.ids)
	c.kt.mu.Lock()
	for k, ck := range c.ids {
		if ck.id == invalidKey || c.kt.dying[ck.id] {
			delete(c.ids, k)
		}
	}
	c.kt.mu.Unlock()
	c.slots = [keySlots]keySlot{}
	c.ids = compact(c.ids, &c.peak, before)
	c.epoch = e
	return e
}
