package jsontext_test

import (
	"fmt"

	"github.com/valyala/fastjson"

	"github.com/fastflow/fastflow/log/jsontext"
)

// fastjson takes texts that encoding/json, Jackson and Python refuse;
// Validate refuses them as those parsers do.
func ExampleValidate() {
	for _, text := range []string{`{"n":1}`, `{"n":01}`, `{"n":NaN}`, "[\"a\x01\"]"} {
		_, lenient := new(fastjson.Parser).Parse(text)
		fmt.Printf("%q: fastjson %v, strict %v\n", text, lenient == nil, jsontext.Validate([]byte(text)) == nil)
	}
	// Output:
	// "{\"n\":1}": fastjson true, strict true
	// "{\"n\":01}": fastjson true, strict false
	// "{\"n\":NaN}": fastjson true, strict false
	// "[\"a\x01\"]": fastjson true, strict false
}

// ValidValue checks one value a reader took out of a record, as fastjson
// holds its text, without validating the rest of the record.
func ExampleValidValue() {
	var p fastjson.Parser
	v, _ := p.Parse(`{"service":"pay\u006dents","retries":01,"host":{"name":"a"}}`)
	for _, field := range []string{"service", "retries", "host"} {
		fmt.Println(field, jsontext.ValidValue(v.Get(field).MarshalTo(nil)))
	}
	// Output:
	// service true
	// retries false
	// host true
}
