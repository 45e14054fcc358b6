//! Resume with `since`: exactly the missed events, or a reset and a snapshot beyond the replay
//! buffer or from an id never issued.

use serde_json::json;

use crate::helpers::{
    greenhouse::{create_device, greenhouse},
    quiet_app,
    rt_client::{SseAuth, SseClient, WAIT, WsClient, id_of, sse_url},
};

use super::{desired, put_desired};

// ---------------------------------------------------------------------------------------------
// 8. Resume and reset
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn realtime_resume_sends_exactly_the_missed_events() {
    let app = quiet_app(&[]).await;
    let g = greenhouse(&app).await;
    let dev = create_device(&app, &g.owner, g.grower_id, "controller").await;
    let dev2 = create_device(&app, &g.owner, g.grower_id, "controller-2").await;
    let path = desired(dev.id);

    let mut ws = WsClient::authed(&app, &g.owner.access).await;
    let s = id_of(&ws.snapshot(&path).await);
    for v in 1..=5 {
        put_desired(&app, &g.owner, dev.id, json!({ "step": v })).await;
        assert_eq!(id_of(&ws.expect_event(&path).await), s + v);
    }
    ws.close().await;

    // WebSocket: `since` two events back gives exactly the three after it, no snapshot.
    let mut ws = WsClient::authed(&app, &g.owner.access).await;
    ws.subscribe_since(&path, &(s + 2).to_string()).await;
    for v in 3..=5 {
        let ev = ws.next_on(&path, WAIT).await;
        assert_eq!(ev["type"], "event", "a resume sends events, not a snapshot: {ev}");
        assert_eq!(id_of(&ev), s + v, "{ev}");
        assert_eq!(ev["data"]["desiredVersion"], v, "{ev}");
    }
    put_desired(&app, &g.owner, dev.id, json!({ "step": 6 })).await;
    assert_eq!(id_of(&ws.expect_event(&path).await), s + 6, "then live");
    // `since` the latest id: nothing is missed, nothing is sent until the next change.
    let mut up_to_date = WsClient::authed(&app, &g.owner.access).await;
    up_to_date.subscribe_since(&path, &(s + 6).to_string()).await;
    put_desired(&app, &g.owner, dev.id, json!({ "step": 7 })).await;
    let ev = up_to_date.next_on(&path, WAIT).await;
    assert_eq!((ev["type"].as_str(), id_of(&ev)), (Some("event"), s + 7), "{ev}");
    assert_eq!(id_of(&ws.expect_event(&path).await), s + 7);

    // SSE: the `id:` of each message is the cursor; `Last-Event-ID` resumes after it.
    let mut sse = SseClient::authed(&app, &[&path], &g.owner.access).await;
    let (cursor, snap) = sse.next_on(&path, WAIT).await;
    assert_eq!((snap["type"].as_str(), id_of(&snap)), (Some("snapshot"), s + 7), "{snap}");
    assert_eq!(cursor, Some((s + 7).to_string()));
    put_desired(&app, &g.owner, dev.id, json!({ "step": 8 })).await;
    let (cursor, ev) = sse.next_on(&path, WAIT).await;
    assert_eq!(id_of(&ev), s + 8);
    assert_eq!(cursor, Some((s + 8).to_string()));
    drop(sse);
    for v in 9..=10 {
        put_desired(&app, &g.owner, dev.id, json!({ "step": v })).await;
    }
    let mut sse =
        SseClient::connect(app.addr, &[&path], SseAuth::Query(&g.owner.access), Some(&(s + 8).to_string())).await;
    for v in 9..=10 {
        let (cursor, ev) = sse.next_on(&path, WAIT).await;
        assert_eq!(ev["type"], "event", "{ev}");
        assert_eq!(id_of(&ev), s + v, "{ev}");
        assert_eq!(cursor, Some((s + v).to_string()));
    }
    drop(sse);
    // `?lastEventId=` does the same.
    let since = (s + 9).to_string();
    let url = sse_url(app.addr, &[("path", &path), ("access_token", &g.owner.access), ("lastEventId", &since)]);
    let res = reqwest::Client::new().get(url).send().await.unwrap();
    let mut sse = SseClient::from_response(res).await;
    let (_, ev) = sse.next_on(&path, WAIT).await;
    assert_eq!((ev["type"].as_str(), id_of(&ev)), (Some("event"), s + 10), "{ev}");
    drop(sse);

    // Several paths in one stream: the cursor has one id per path, in order, and resumes both.
    let path2 = desired(dev2.id);
    let mut sse = SseClient::authed(&app, &[&path, &path2], &g.owner.access).await;
    let mut cursor = None;
    let mut ids = [0u64; 2];
    for _ in 0..2 {
        let (c, m) = sse.next_message(WAIT).await;
        assert_eq!(m["type"], "snapshot", "{m}");
        let slot = if m["path"] == path.as_str() { 0 } else { 1 };
        ids[slot] = id_of(&m);
        cursor = c;
    }
    assert_eq!(cursor, Some(format!("{},{}", ids[0], ids[1])), "one id per path parameter, in order");
    drop(sse);
    put_desired(&app, &g.owner, dev.id, json!({ "step": 11 })).await;
    put_desired(&app, &g.owner, dev2.id, json!({ "x": 1 })).await;
    put_desired(&app, &g.owner, dev.id, json!({ "step": 12 })).await;
    let mut sse =
        SseClient::connect(app.addr, &[&path, &path2], SseAuth::Query(&g.owner.access), cursor.as_deref()).await;
    let mut got: Vec<(String, u64)> = Vec::new();
    let mut last_cursor = None;
    for _ in 0..3 {
        let (c, m) = sse.next_message(WAIT).await;
        assert_eq!(m["type"], "event", "resumed, no snapshot: {m}");
        got.push((m["path"].as_str().unwrap().to_string(), id_of(&m)));
        last_cursor = c;
    }
    got.sort();
    let mut expected = vec![(path.clone(), ids[0] + 1), (path.clone(), ids[0] + 2), (path2.clone(), ids[1] + 1)];
    expected.sort();
    assert_eq!(got, expected);
    assert_eq!(last_cursor, Some(format!("{},{}", ids[0] + 2, ids[1] + 1)));
}

#[tokio::test]
async fn realtime_resume_beyond_the_replay_buffer_or_from_nowhere_is_a_reset_and_a_snapshot() {
    let app = quiet_app(&[("REALTIME_REPLAY_EVENTS", "3")]).await;
    let g = greenhouse(&app).await;
    let dev = create_device(&app, &g.owner, g.grower_id, "controller").await;
    let path = desired(dev.id);

    let mut ws = WsClient::authed(&app, &g.owner.access).await;
    let s = id_of(&ws.snapshot(&path).await);
    for v in 1..=5 {
        put_desired(&app, &g.owner, dev.id, json!({ "step": v })).await;
    }
    for v in 1..=5 {
        assert_eq!(id_of(&ws.expect_event(&path).await), s + v);
    }
    ws.close().await;

    // Three held: missing the last three is a replay...
    let mut ws = WsClient::authed(&app, &g.owner.access).await;
    ws.subscribe_since(&path, &(s + 2).to_string()).await;
    for v in 3..=5 {
        let ev = ws.next_on(&path, WAIT).await;
        assert_eq!((ev["type"].as_str(), id_of(&ev)), (Some("event"), s + v), "{ev}");
    }
    ws.close().await;

    // ...missing five is a reset and a fresh snapshot, never a hole; so is an id never issued.
    // Every event here is one desired version, so the last id is `s + version`.
    let mut version = 5;
    for since in [s.to_string(), "1".to_string(), (s + 1000).to_string()] {
        let mut ws = WsClient::authed(&app, &g.owner.access).await;
        ws.subscribe_since(&path, &since).await;
        let reset = ws.next_on(&path, WAIT).await;
        assert_eq!(reset, json!({ "type": "reset", "path": path }), "since {since}");
        let snap = ws.expect_snapshot(&path).await;
        assert_eq!(id_of(&snap), s + version, "since {since}: {snap}");
        assert_eq!(snap["data"]["desiredVersion"], version, "{snap}");
        put_desired(&app, &g.owner, dev.id, json!({ "again": since })).await;
        version += 1;
        let ev = ws.expect_event(&path).await;
        assert_eq!(id_of(&ev), s + version, "then live: {ev}");
        assert_eq!(ev["data"]["desiredVersion"], version, "{ev}");
        ws.close().await;
    }

    // SSE: the same reset for a `Last-Event-ID` too far back.
    let mut sse = SseClient::connect(app.addr, &[&path], SseAuth::Query(&g.owner.access), Some(&s.to_string())).await;
    let (_, reset) = sse.next_on(&path, WAIT).await;
    assert_eq!(reset, json!({ "type": "reset", "path": path }));
    let (cursor, snap) = sse.next_on(&path, WAIT).await;
    assert_eq!(snap["type"], "snapshot", "{snap}");
    assert_eq!(snap["data"]["desiredVersion"], version, "{snap}");
    assert_eq!(id_of(&snap), s + version, "{snap}");
    assert_eq!(cursor, Some(snap["id"].as_str().unwrap().to_string()));
}
