package partition_test

import (
	"fmt"

	"github.com/fastflow/fastflow/partition"
)

func ExampleForKey() {
	// The same key lands on the same partition as with Kafka's Java client.
	fmt.Println(partition.ForKey([]byte("payments"), 6))
	fmt.Println(partition.Murmur2([]byte("21")))
	// Output:
	// 2
	// -973932308
}

func ExampleAssign() {
	// Two pipeline workers share six partitions; each owns whole partitions.
	fmt.Println(partition.Assign(6, 2))
	// Output: [[0 2 4] [1 3 5]]
}
