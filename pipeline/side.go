package pipeline

import (
	"github.com/fastflow/fastflow/log"
)

// Records a pipeline copies aside keep their original form inside an
// envelope, so that `fastflow consume` shows them readably and they can
// be replayed:
//
//	<pipeline>.dlq:  {"reason":"invalid_json","record":{"topic":...,"partition":3,"offset":41,...,"value":...}}
//	<pipeline>.late: {"event_time":"...","watermark":"...","record":{...}}

func dlqEnvelope(dst []byte, p *plan, rec *log.Record, r reason) []byte {
	dst = append(dst, `{"reason":`...)
	dst = log.AppendJSONString(dst, r.String())
	dst = append(dst, `,"record":`...)
	dst = log.AppendJSON(dst, p.cfg.Source.topic(), rec, false)
	return append(dst, '}')
}

func lateEnvelope(dst []byte, p *plan, rec *log.Record, t, wm int64) []byte {
	dst = append(dst, `{"event_time":`...)
	dst = appendTime(dst, t)
	dst = append(dst, `,"watermark":`...)
	dst = appendTime(dst, wm)
	dst = append(dst, `,"record":`...)
	dst = log.AppendJSON(dst, p.cfg.Source.topic(), rec, false)
	return append(dst, '}')
}
