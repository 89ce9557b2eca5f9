package partition

// Assign splits partitions 0..partitions-1 over workers members and returns,
// for each member, the partitions it owns, in increasing order. Partition p
// goes to member p % members (Kafka's round-robin assignor over one topic),
// so the partitions are balanced to within one and a member's set changes
// only when the member count does. members must be positive.
func Assign(partitions int32, members int) [][]int32 {
	out := make([][]int32, members)
	for p := int32(0); p < partitions; p++ {
		m := int(p) % members
		out[m] = append(out[m], p)
	}
	return out
}

// Owner returns the member that Assign gives partition p to.
func Owner(p int32, members int) int { return int(p) % members }
