//! Wire types of the broker hooks, in the shapes EMQX (HTTP authn/authz) and mosquitto-go-auth
//! (HTTP backend) send and read.

use serde::{Deserialize, Serialize};

/// `POST /mqtt/auth` input (JSON or form): EMQX HTTP authn and mosquitto-go-auth send these.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct MqttAuthIn {
    #[serde(default)]
    pub clientid: Option<String>,
    pub username: String,
    #[serde(default)]
    pub password: String,
}

/// `POST /mqtt/acl` input. `acc`: 1 read, 2 write (publish), 3 read and write, 4 subscribe —
/// or `"publish"`/`"subscribe"` (EMQX's `${action}`).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct MqttAclIn {
    #[serde(default)]
    pub clientid: Option<String>,
    pub username: String,
    pub topic: String,
    #[schema(value_type = Object)]
    pub acc: serde_json::Value,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct MqttSuperuserIn {
    pub username: String,
}

/// An allowed hook call, in the shape both EMQX (`result`, `is_superuser`) and
/// mosquitto-go-auth (`ok`) read. A refusal is a 403 in the usual error shape.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MqttAllow {
    pub result: &'static str,
    pub is_superuser: bool,
    pub ok: bool,
}

impl MqttAllow {
    pub fn new(is_superuser: bool) -> Self {
        MqttAllow { result: "allow", is_superuser, ok: true }
    }
}
