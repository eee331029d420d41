use super::*;

/// A transcript shaped like `claude -p --output-format stream-json --verbose`: two turns (the
/// first in two events of one message), three tool calls, a result.
const TRANSCRIPT: &str = concat!(
    r#"{"type":"system","subtype":"init","session_id":"sess-1","tools":["Bash","Read"],"model":"claude"}"#,
    "\n",
    r#"{"type":"assistant","message":{"id":"msg_1","content":[{"type":"text","text":"Looking."}],"usage":{"input_tokens":10,"output_tokens":3}},"session_id":"sess-1"}"#,
    "\n",
    r#"{"type":"assistant","message":{"id":"msg_1","content":[{"type":"tool_use","id":"t1","name":"Bash","input":{"command":"ls"}}],"usage":{"input_tokens":10,"output_tokens":7}},"session_id":"sess-1"}"#,
    "\n",
    r#"{"type":"user","message":{"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":"a\nb"}]},"session_id":"sess-1"}"#,
    "\n",
    r#"{"type":"assistant","message":{"id":"msg_2","content":[{"type":"tool_use","name":"Read","input":{}},{"type":"tool_use","name":"Bash","input":{}}],"usage":{"input_tokens":20,"output_tokens":5}}}"#,
    "\n",
    r#"{"type":"result","subtype":"success","is_error":false,"result":"All done.","num_turns":2,"total_cost_usd":0.0123,"usage":{"input_tokens":30,"output_tokens":12},"session_id":"sess-1"}"#,
    "\n",
);

fn parse(input: &[u8], guards: Guards) -> (StreamSummary, Vec<String>) {
    let mut p = StreamParser::new(guards, 1 << 20);
    let stops: Vec<String> = p.push(input).into_iter().collect();
    (p.finish(), stops)
}

fn summary(input: &str) -> StreamSummary {
    parse(input.as_bytes(), Guards::default()).0
}

#[test]
fn a_transcript_gives_result_turns_tokens_cost_session_and_tools() {
    let s = summary(TRANSCRIPT);
    assert_eq!(s.result.as_deref(), Some("All done."));
    assert_eq!(s.subtype.as_deref(), Some("success"));
    assert_eq!(s.is_error, Some(false));
    assert_eq!(s.turns, 2);
    assert_eq!((s.input_tokens, s.output_tokens), (Some(30), Some(12)));
    assert_eq!(s.cost_usd, Some(0.0123));
    assert_eq!(s.session_id.as_deref(), Some("sess-1"));
    assert_eq!(
        s.tools,
        vec![
            ToolCount {
                name: "Bash".into(),
                count: 2
            },
            ToolCount {
                name: "Read".into(),
                count: 1
            }
        ]
    );
    assert_eq!(s.bad_lines, 0);
    assert!(s.has_result && s.failure().is_none());
}

#[test]
fn every_way_of_cutting_the_stream_gives_the_same_summary() {
    let whole = summary(TRANSCRIPT);
    let bytes = TRANSCRIPT.as_bytes();
    for size in [1, 2, 3, 7, 64, 333] {
        let mut p = StreamParser::new(Guards::default(), 1 << 20);
        for chunk in bytes.chunks(size) {
            p.push(chunk);
        }
        assert_eq!(p.finish(), whole, "chunks of {size}");
    }
}

#[test]
fn without_a_result_the_counts_come_from_the_assistant_events() {
    let cut = TRANSCRIPT
        .rsplit_once(r#"{"type":"result""#)
        .map(|(a, _)| a);
    let s = summary(cut.expect("has a result line"));
    assert_eq!(s.turns, 2);
    // msg_1's latest usage (10, 7) plus msg_2's (20, 5).
    assert_eq!((s.input_tokens, s.output_tokens), (Some(30), Some(12)));
    assert_eq!(s.result, None);
    assert_eq!(
        s.failure().as_deref(),
        Some("the agent's stream-json output has no result line")
    );
}

#[test]
fn hostile_lines_are_counted_and_ignored() {
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let lines: Vec<String> = vec![
        "not json at all".into(),
        "[1,2,3]".into(),
        r#""a string""#.into(),
        r#"{"no":"type"}"#.into(),
        r#"{"type":42}"#.into(),
        "{\"type\":\"assistant\"".into(), // cut short
        deep,
        String::from_utf8_lossy(b"{\"type\":\"result\",\"result\":\"\xff\xfe\"}").into_owned(),
        "   ".into(), // blank: not counted
        // Wrong types inside a well-formed event are ignored field by field.
        r#"{"type":"assistant","message":"text instead of an object"}"#.into(),
        r#"{"type":"assistant","message":{"content":"a string","usage":{"input_tokens":-5,"output_tokens":"many"}}}"#.into(),
        r#"{"type":"assistant","message":{"content":[{"type":"tool_use","name":7},{"type":"tool_use"},null,5]}}"#.into(),
        r#"{"type":"result","num_turns":"nine","total_cost_usd":-1,"usage":[],"result":{"x":1}}"#.into(),
        r#"{"type":"result","total_cost_usd":"0.5"}"#.into(),
    ];
    let text = lines.join("\n");
    let s = summary(&text);
    // The first seven are bad; the invalid UTF-8 became U+FFFD and parses.
    assert_eq!(s.bad_lines, 7, "{s:?}");
    assert_eq!(s.turns, 3, "three assistant events without ids");
    assert!(s.tools.is_empty(), "{:?}", s.tools);
    assert_eq!(s.cost_usd, None);
    assert_eq!(
        s.input_tokens, None,
        "negative and string counts are not counts"
    );
    assert!(s.has_result);
    assert_eq!(s.result, None);
}

#[test]
fn a_line_over_the_limit_is_skipped_whole_and_the_next_line_still_parses() {
    let mut input = br#"{"type":"result","result":""#.to_vec();
    input.extend(std::iter::repeat_n(b'x', MAX_LINE));
    input.extend_from_slice(b"\"}\n");
    input.extend_from_slice(br#"{"type":"result","subtype":"success","result":"short"}"#);
    let mut p = StreamParser::new(Guards::default(), 1 << 20);
    for chunk in input.chunks(1 << 16) {
        p.push(chunk);
    }
    let s = p.finish();
    assert_eq!(s.bad_lines, 1);
    assert_eq!(
        s.result.as_deref(),
        Some("short"),
        "last line without newline"
    );
}

#[test]
fn strings_are_bounded_and_safe_to_print() {
    let long = "é".repeat(300);
    let line = format!(
        r#"{{"type":"result","subtype":"{long}","session_id":"id\u001b[31m","result":"{long}"}}"#
    );
    let mut p = StreamParser::new(Guards::default(), 101);
    p.push(line.as_bytes());
    let s = p.finish();
    let result = s.result.expect("result");
    assert_eq!(result.len(), 100, "cut at a character boundary");
    assert!(s.result_truncated);
    assert!(s.subtype.expect("subtype").len() <= MAX_NAME);
    assert_eq!(s.session_id.as_deref(), Some("id\u{FFFD}[31m"));
}

#[test]
fn tool_names_are_bounded_in_number() {
    let mut text = String::new();
    for i in 0..MAX_TOOLS + 10 {
        text.push_str(&format!(
            r#"{{"type":"assistant","message":{{"id":"m{i}","content":[{{"type":"tool_use","name":"tool{i}"}}]}}}}"#
        ));
        text.push('\n');
    }
    text.push_str(
        r#"{"type":"assistant","message":{"content":[{"type":"tool_use","name":"tool0"}]}}"#,
    );
    let s = summary(&text);
    assert_eq!(s.tools.len(), MAX_TOOLS + 1);
    assert_eq!(s.tools[0].count, 2, "a known tool keeps counting");
    let other = s.tools.last().expect("other");
    assert_eq!((other.name.as_str(), other.count), (OTHER_TOOLS, 10));
}

#[test]
fn guards_trip_once_with_their_reason() {
    let check = |guards: Guards, want: Option<&str>| {
        let (s, stops) = parse(TRANSCRIPT.as_bytes(), guards);
        assert_eq!(stops.first().map(String::as_str), want, "{guards:?}");
        assert!(stops.len() <= 1);
        assert_eq!(s.stopped.as_deref(), want);
        assert_eq!(s.failure().as_deref(), want);
    };
    check(Guards::default(), None);
    check(
        Guards {
            max_turns: Some(2),
            max_cost_usd: Some(0.5),
        },
        None,
    );
    check(
        Guards {
            max_turns: Some(1),
            max_cost_usd: None,
        },
        Some("stopped: 2 turns exceed maxTurns 1"),
    );
    check(
        Guards {
            max_turns: None,
            max_cost_usd: Some(0.01),
        },
        Some("stopped: cost 0.0123 USD exceeds maxCostUsd 0.01"),
    );
}

#[test]
fn the_turn_guard_trips_on_the_line_that_starts_the_turn() {
    let mut p = StreamParser::new(
        Guards {
            max_turns: Some(1),
            max_cost_usd: None,
        },
        1 << 20,
    );
    let lines: Vec<&str> = TRANSCRIPT.split_inclusive('\n').collect();
    let stops: Vec<Option<String>> = lines.iter().map(|l| p.push(l.as_bytes())).collect();
    assert_eq!(
        stops,
        vec![
            None,
            None,
            None,
            None,
            Some("stopped: 2 turns exceed maxTurns 1".into()),
            None
        ]
    );
}

#[test]
fn reported_errors_fail_the_run() {
    for (line, want) in [
        (
            r#"{"type":"result","subtype":"error_max_turns","is_error":true,"num_turns":9}"#,
            Some("the agent reported an error (error_max_turns)"),
        ),
        (
            r#"{"type":"result","subtype":"success","is_error":true,"result":"API Error: 500"}"#,
            Some("the agent reported an error (success): API Error: 500"),
        ),
        (
            r#"{"type":"result","subtype":"error_during_execution"}"#,
            Some("the agent reported an error (error_during_execution)"),
        ),
        (
            r#"{"type":"result","subtype":"success","result":"ok"}"#,
            None,
        ),
    ] {
        assert_eq!(summary(line).failure().as_deref(), want, "{line}");
    }
}

#[test]
fn redaction_reaches_the_parsed_texts() {
    // A secret with a quote is escaped in the JSON text, so only the parsed string shows it.
    let line = r#"{"type":"result","result":"key=se\"cret","session_id":"se\"cret"}"#;
    let mut s = summary(line);
    s.redact(|t| t.replace("se\"cret", "[REDACTED]"));
    assert_eq!(s.result.as_deref(), Some("key=[REDACTED]"));
    assert_eq!(s.session_id.as_deref(), Some("[REDACTED]"));
}

#[test]
fn the_summary_serializes_in_camel_case() {
    let v = serde_json::to_value(summary(TRANSCRIPT)).expect("json");
    for key in [
        "result",
        "subtype",
        "isError",
        "turns",
        "inputTokens",
        "outputTokens",
        "costUsd",
        "sessionId",
        "tools",
        "badLines",
    ] {
        assert!(v.get(key).is_some(), "{key} missing in {v}");
    }
    assert!(v.get("stopped").is_none() && v.get("hasResult").is_none());
}
