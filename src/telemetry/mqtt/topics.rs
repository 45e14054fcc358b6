//! The MQTT topics of a device: it publishes readings to `mash/devices/{id}/telemetry` and
//! reads its desired state from `mash/devices/{id}/desired`.

use uuid::Uuid;

pub fn telemetry_topic(device_id: Uuid) -> String {
    format!("mash/devices/{device_id}/telemetry")
}

pub fn desired_topic(device_id: Uuid) -> String {
    format!("mash/devices/{device_id}/desired")
}

/// The device id of `mash/devices/{id}/<leaf>`.
pub fn topic_device(topic: &str, leaf: &str) -> Option<Uuid> {
    let mut parts = topic.split('/');
    match (parts.next(), parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("mash"), Some("devices"), Some(id), Some(l), None) if l == leaf => Uuid::parse_str(id).ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_name_their_device() {
        let id = Uuid::now_v7();
        assert_eq!(topic_device(&telemetry_topic(id), "telemetry"), Some(id));
        assert_eq!(topic_device(&desired_topic(id), "desired"), Some(id));
        assert_eq!(topic_device(&telemetry_topic(id), "desired"), None);
        assert_eq!(topic_device(&format!("mash/devices/{id}/telemetry/x"), "telemetry"), None);
        assert_eq!(topic_device("mash/devices/not-a-uuid/telemetry", "telemetry"), None);
    }
}
