package server

import (
	"bytes"
	"encoding/json"
	"net/http"
	"reflect"
	"testing"

	"github.com/fastflow/fastflow/log"
)

// FuzzIngest posts arbitrary bodies to a real server: each is refused
// whole (400) or stored whole, every record at the offset the reply gives,
// with the bytes the client sent — a line as it was written (less a
// trailing \r), an array's element as the same JSON value — and with
// ?key_field=k, the key murmur2 put it under.
func FuzzIngest(f *testing.F) {
	for _, s := range []string{
		`{"k":"a","ts":1795341600000}` + "\n" + `{"k":2}` + "\r\n\n" + `not json`,
		`[{"k":"a"},{"k":"\u0062","v":[1,2.50,null]}, 3, "x"]`,
		`[]`, `[`, "\n\n", `{"k":{"n":[1]}}`, "\xff\xfe", `[{"k":"a"}] trailing`,
	} {
		f.Add([]byte(s), true)
		f.Add([]byte(s), false)
	}
	base, l := startServer(f, "topics:\n  - {name: events, partitions: 3}\n")
	tp, err := l.Topic("events")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte, keyed bool) {
		url := base + "/topics/events/records"
		if keyed {
			url += "?key_field=k&timestamp_field=ts"
		}
		resp, err := http.Post(url, "application/x-ndjson", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var reply struct {
			Error   string
			Records []struct {
				Partition int32
				Offset    int64
			}
		}
		if err := json.NewDecoder(resp.Body).Decode(&reply); err != nil {
			t.Fatalf("reply: %v", err)
		}
		if resp.StatusCode == http.StatusBadRequest && reply.Error != "" {
			return
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%d: %s", resp.StatusCode, reply.Error)
		}
		sent, isArray := sentRecords(body)
		if len(reply.Records) != len(sent) {
			t.Fatalf("%d records stored, %d sent", len(reply.Records), len(sent))
		}
		for i, at := range reply.Records {
			p, _ := tp.Partition(at.Partition)
			r, err := p.NewReader(at.Offset)
			if err != nil {
				t.Fatal(err)
			}
			recs, err := r.Read(make([]log.Record, 0, 1))
			r.Close()
			if err != nil || len(recs) == 0 {
				t.Fatalf("record %d at %d/%d: %v", i, at.Partition, at.Offset, err)
			}
			if got := recs[0].Value; isArray && !sameJSON(got, sent[i]) || !isArray && !bytes.Equal(got, sent[i]) {
				t.Fatalf("record %d: sent %q, stored %q", i, sent[i], got)
			}
		}
	})
}

// sentRecords is what a client means by a body: the elements of a JSON
// array, or the lines that are not blank.
func sentRecords(body []byte) ([][]byte, bool) {
	var arr []json.RawMessage
	if t := bytes.TrimSpace(body); len(t) > 0 && t[0] == '[' {
		if json.Unmarshal(t, &arr) == nil {
			out := make([][]byte, len(arr))
			for i, e := range arr {
				out[i] = e
			}
			return out, true
		}
	}
	var out [][]byte
	for _, line := range bytes.Split(body, []byte{'\n'}) {
		line = bytes.TrimSuffix(line, []byte{'\r'})
		if len(bytes.TrimSpace(line)) > 0 {
			out = append(out, line)
		}
	}
	return out, false
}

func sameJSON(a, b []byte) bool {
	var x, y any
	da, db := json.NewDecoder(bytes.NewReader(a)), json.NewDecoder(bytes.NewReader(b))
	da.UseNumber()
	db.UseNumber()
	return da.Decode(&x) == nil && db.Decode(&y) == nil && reflect.DeepEqual(x, y)
}
