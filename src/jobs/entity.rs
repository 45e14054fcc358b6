//! `background_jobs` and `job_schedules`. A job row is [`JobStatus::Queued`] (due at `run_at`),
//! [`JobStatus::Running`] (leased until `locked_until`) or [`JobStatus::Dead`]; a finished job is
//! deleted.

use sea_orm::entity::prelude::*;

/// Where a job is in its life. Stored as its lowercase name; a CHECK refuses any other value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum JobStatus {
    /// Waiting for `run_at` (retries included).
    #[sea_orm(string_value = "queued")]
    Queued,
    /// Leased to a worker until `locked_until`.
    #[sea_orm(string_value = "running")]
    Running,
    /// Out of attempts (or failed for good), kept with its last error.
    #[sea_orm(string_value = "dead")]
    Dead,
}

impl JobStatus {
    /// The stored string.
    pub const fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Dead => "dead",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        <Self as sea_orm::Iterable>::iter().find(|v| v.as_str() == s)
    }
}

/// The stored strings, for code that reads rows as text (the API tests compare with them).
/// Code in `src/` compares with [`JobStatus`].
pub const QUEUED: &str = JobStatus::Queued.as_str();
pub const RUNNING: &str = JobStatus::Running.as_str();
pub const DEAD: &str = JobStatus::Dead.as_str();

/// A status compares equal to its stored string.
impl PartialEq<&str> for JobStatus {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// A stored string back to its status, for rows written from the strings above. Any other
/// string is a bug in the caller (the column's CHECK refuses it too): it panics.
impl From<&str> for JobStatus {
    fn from(s: &str) -> Self {
        Self::parse(s).unwrap_or_else(|| panic!("{s:?} is not a job status"))
    }
}

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "background_jobs")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub job_type: String,
    pub payload: Json,
    pub priority: i16,
    pub status: JobStatus,
    pub attempts: i32,
    pub max_attempts: i32,
    pub run_at: DateTimeUtc,
    pub locked_until: Option<DateTimeUtc>,
    pub locked_by: Option<String>,
    pub last_error: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

pub mod schedule {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "job_schedules")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub name: String,
        pub every_secs: i64,
        pub next_run_at: DateTimeUtc,
        pub last_run_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
