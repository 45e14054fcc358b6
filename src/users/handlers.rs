//! `/users/*`: the caller's own account, profile and password; admin user management.

use axum::{extract::State, http::StatusCode};
use chrono::Utc;
use garde::Validate;
use sea_orm::{
    ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder,
    sea_query::{Expr, ExprTrait},
};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;

use crate::routes;
use uuid::Uuid;

use super::{
    UserOut,
    entity::{profile, user},
    find_live,
};
use crate::{
    audit::{self, Entry},
    auth::{
        AuthUser, Authorized, ClientMeta, Role, perm,
        sessions::{self, RevokeReason},
    },
    http::{AppError, Json, ListParams, Page, Path, Query, Valid},
    state::AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_me, patch_me))
        .routes(routes!(get_profile, put_profile))
        .routes(routes!(change_password))
        .routes(routes!(list_users))
        .routes(routes!(get_user, patch_user, delete_user))
}

/// The signed-in user.
#[utoipa::path(get, path = "/users/me", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = UserOut), (status = 401)))]
#[tracing::instrument(skip_all)]
async fn get_me(State(state): State<AppState>, me: AuthUser) -> Result<Json<UserOut>, AppError> {
    let me = state.user_views.get(me.user_id).await?;
    Ok(Json(me.ok_or_else(super::account_gone)?))
}

#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MePatch {
    #[garde(length(chars, min = 1, max = 200), inner(custom(super::not_blank)))]
    pub name: Option<String>,
}

/// Changes the caller's own name.
#[utoipa::path(patch, path = "/users/me", tag = "users", security(("bearer" = [])), request_body = MePatch,
    responses((status = 200, body = UserOut), (status = 400), (status = 401)))]
#[tracing::instrument(skip_all)]
async fn patch_me(
    State(state): State<AppState>,
    me: AuthUser,
    Valid(Json(input)): Valid<Json<MePatch>>,
) -> Result<Json<UserOut>, AppError> {
    let u = super::load_signed_in(&state.db, &me).await?;
    let mut active: user::ActiveModel = u.into();
    if let Some(name) = input.name {
        active.name = Set(name.trim().to_string());
    }
    active.updated_at = Set(Utc::now());
    Ok(Json(UserOut::from(&active.update(&state.db).await?)))
}

/// A user's profile.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProfileOut {
    pub avatar_url: Option<String>,
    pub phone: Option<String>,
    pub address: Option<String>,
    pub bio: Option<String>,
    pub preferences: Option<serde_json::Value>,
    pub updated_at: Option<chrono::DateTime<Utc>>,
}

impl From<Option<profile::Model>> for ProfileOut {
    fn from(p: Option<profile::Model>) -> Self {
        match p {
            Some(p) => Self {
                avatar_url: p.avatar_url,
                phone: p.phone,
                address: p.address,
                bio: p.bio,
                preferences: p.preferences,
                updated_at: Some(p.updated_at),
            },
            None => {
                Self { avatar_url: None, phone: None, address: None, bio: None, preferences: None, updated_at: None }
            }
        }
    }
}

/// The caller's profile (empty fields until set).
#[utoipa::path(get, path = "/users/me/profile", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = ProfileOut), (status = 401)))]
#[tracing::instrument(skip_all)]
async fn get_profile(State(state): State<AppState>, me: AuthUser) -> Result<Json<ProfileOut>, AppError> {
    let p = profile::Entity::find().filter(profile::Column::UserId.eq(me.user_id)).one(&state.db).await?;
    Ok(Json(ProfileOut::from(p)))
}

fn valid_avatar_url(url: &str, _: &()) -> garde::Result {
    match url::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(()),
        _ => Err(garde::Error::new("must be an http(s) URL")),
    }
}

fn valid_phone(phone: &str, _: &()) -> garde::Result {
    let digits = phone.chars().filter(char::is_ascii_digit).count();
    let allowed = phone.chars().all(|c| c.is_ascii_digit() || " +-().".contains(c));
    if allowed && (5..=20).contains(&digits) { Ok(()) } else { Err(garde::Error::new("must be a phone number")) }
}

fn valid_preferences(p: &serde_json::Value, _: &()) -> garde::Result {
    if !p.is_object() {
        return Err(garde::Error::new("must be a JSON object"));
    }
    if p.to_string().len() > 16 * 1024 {
        return Err(garde::Error::new("must be at most 16 KiB"));
    }
    Ok(())
}

#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProfileIn {
    #[garde(length(max = 2048), inner(custom(valid_avatar_url)))]
    pub avatar_url: Option<String>,
    /// At most 32 characters (the column's size), 5 to 20 digits.
    #[garde(length(chars, max = 32), inner(custom(valid_phone)))]
    pub phone: Option<String>,
    #[garde(length(max = 500))]
    pub address: Option<String>,
    #[garde(length(max = 2000))]
    pub bio: Option<String>,
    #[garde(inner(custom(valid_preferences)))]
    pub preferences: Option<serde_json::Value>,
}

/// Replaces the caller's profile (fields left out become empty).
#[utoipa::path(put, path = "/users/me/profile", tag = "users", security(("bearer" = [])), request_body = ProfileIn,
    responses((status = 200, body = ProfileOut), (status = 400), (status = 401)))]
#[tracing::instrument(skip_all)]
async fn put_profile(
    State(state): State<AppState>,
    me: AuthUser,
    Valid(Json(input)): Valid<Json<ProfileIn>>,
) -> Result<Json<ProfileOut>, AppError> {
    super::load_signed_in(&state.db, &me).await?;
    let now = Utc::now();
    let row = profile::ActiveModel {
        id: Set(Uuid::now_v7()),
        user_id: Set(me.user_id),
        avatar_url: Set(input.avatar_url),
        phone: Set(input.phone),
        address: Set(input.address),
        bio: Set(input.bio),
        preferences: Set(input.preferences),
        created_at: Set(now),
        updated_at: Set(now),
    };
    use profile::Column as C;
    profile::Entity::insert(row)
        .on_conflict(
            sea_orm::sea_query::OnConflict::column(C::UserId)
                .update_columns([C::AvatarUrl, C::Phone, C::Address, C::Bio, C::Preferences, C::UpdatedAt])
                .to_owned(),
        )
        .exec_without_returning(&state.db)
        .await?;
    let p = profile::Entity::find().filter(C::UserId.eq(me.user_id)).one(&state.db).await?;
    Ok(Json(ProfileOut::from(p)))
}

#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PasswordChangeIn {
    #[garde(length(min = 1, max = 1024))]
    pub current_password: String,
    #[garde(skip)]
    pub new_password: String,
}

/// Changes the password. Every other session of the user ends at once; this one stays.
#[utoipa::path(post, path = "/users/me/password", tag = "users", security(("bearer" = [])), request_body = PasswordChangeIn,
    responses((status = 204), (status = 400), (status = 401)))]
#[tracing::instrument(skip_all)]
async fn change_password(
    State(state): State<AppState>,
    me: AuthUser,
    client: ClientMeta,
    Valid(Json(input)): Valid<Json<PasswordChangeIn>>,
) -> Result<StatusCode, AppError> {
    let u = super::load_signed_in(&state.db, &me).await?;
    state.auth.passwords.check_policy("newPassword", &input.new_password)?;
    if !state.auth.passwords.verify(&input.current_password, u.password_hash.as_deref()).await? {
        return Err(AppError::invalid_field("currentPassword", "is not correct"));
    }
    let hash = state.auth.passwords.hash(&input.new_password).await?;
    let txn = state.db.begin_write().await?;
    super::replace_password(
        &state,
        txn,
        u.id,
        hash,
        Some(me.session_id),
        RevokeReason::PasswordChanged,
        "user.password_changed",
        &client,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UserListQuery {
    /// Only users with this role.
    pub role: Option<String>,
    /// Case-insensitive substring of email or name.
    pub search: Option<String>,
    /// 1-based page (default 1).
    pub page: Option<String>,
    /// Items per page (default 20, at most 100).
    pub limit: Option<String>,
}

/// Users, newest first (ADMIN).
#[utoipa::path(get, path = "/users", tag = "users", security(("bearer" = [])), params(UserListQuery),
    responses((status = 200, body = Page<UserOut>), (status = 400), (status = 401), (status = 403)))]
#[tracing::instrument(skip_all)]
async fn list_users(
    State(state): State<AppState>,
    _admin: Authorized<perm::ManageUsers>,
    Query(q): Query<UserListQuery>,
) -> Result<Json<Page<UserOut>>, AppError> {
    let page = ListParams { page: q.page, limit: q.limit, cursor: None }.validate()?;
    let mut cond = Condition::all().add(user::Column::DeletedAt.is_null());
    if let Some(role) = q.role.as_deref().filter(|r| !r.is_empty()) {
        let role = Role::parse(role)
            .ok_or_else(|| AppError::invalid_field("role", "must be ADMIN, GROWER, CUSTOMER or VENDOR"))?;
        cond = cond.add(user::Column::Role.eq(role.as_str()));
    }
    if let Some(search) = q.search.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        if search.len() > 100 {
            return Err(AppError::invalid_field("search", "must be at most 100 characters"));
        }
        let pattern = format!("%{}%", escape_like(&search.to_lowercase()));
        let lower = |c: user::Column| Expr::expr(sea_orm::sea_query::Func::lower(Expr::col(c)));
        cond = cond.add(
            Condition::any()
                .add(lower(user::Column::Email).like(sea_orm::sea_query::LikeExpr::new(pattern.clone()).escape('\\')))
                .add(lower(user::Column::Name).like(sea_orm::sea_query::LikeExpr::new(pattern).escape('\\'))),
        );
    }
    let (rows, total) = page
        .fetch(&state.db, user::Entity::find().filter(cond), |q| {
            q.order_by_desc(user::Column::CreatedAt).order_by_desc(user::Column::Id)
        })
        .await?;
    Ok(Json(Page::new(rows.iter().map(UserOut::from).collect(), &page, total)))
}

/// `%`, `_` and `\` in a search term match themselves.
fn escape_like(s: &str) -> String {
    s.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

/// One user (ADMIN).
#[utoipa::path(get, path = "/users/{id}", tag = "users", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = UserOut), (status = 401), (status = 403), (status = 404)))]
#[tracing::instrument(skip_all, fields(user_id = %id))]
async fn get_user(
    State(state): State<AppState>,
    _admin: Authorized<perm::ManageUsers>,
    Path(id): Path<Uuid>,
) -> Result<Json<UserOut>, AppError> {
    Ok(Json(state.user_views.get(id).await?.ok_or_else(|| AppError::NotFound("user not found".into()))?))
}

#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    #[garde(skip)]
    pub role: Option<Role>,
    #[garde(length(chars, min = 1, max = 200), inner(custom(super::not_blank)))]
    pub name: Option<String>,
    /// `true` disables the account and ends its sessions at once; `false` enables it again.
    #[garde(skip)]
    pub disabled: Option<bool>,
}

/// Changes a user's role, name or disabled state (ADMIN). A role change or a disable ends the
/// user's sessions at once, so no token keeps old rights.
#[utoipa::path(patch, path = "/users/{id}", tag = "users", security(("bearer" = [])), params(("id" = Uuid, Path)),
    request_body = UserPatch,
    responses((status = 200, body = UserOut), (status = 400), (status = 401), (status = 403), (status = 404), (status = 422)))]
#[tracing::instrument(skip_all, fields(user_id = %id))]
async fn patch_user(
    State(state): State<AppState>,
    admin: Authorized<perm::ManageUsers>,
    client: ClientMeta,
    Path(id): Path<Uuid>,
    Valid(Json(input)): Valid<Json<UserPatch>>,
) -> Result<Json<UserOut>, AppError> {
    if id == admin.user_id && (input.disabled == Some(true) || input.role.is_some_and(|r| r != Role::Admin)) {
        return Err(AppError::Unprocessable("admins cannot disable or demote themselves".into()));
    }
    let txn = state.db.begin_write().await?;
    let u = find_live(&txn, id).await?.ok_or_else(|| AppError::NotFound("user not found".into()))?;
    let before = UserOut::from(&u);
    let mut active: user::ActiveModel = u.clone().into();
    let mut revoke = None;
    let mut events = Vec::new();
    if let Some(name) = &input.name {
        active.name = Set(name.trim().to_string());
    }
    if let Some(role) = input.role.filter(|r| r.as_str() != u.role) {
        active.role = Set(role.as_str().to_string());
        revoke = Some(RevokeReason::RoleChanged);
        events.push(("user.role_changed", serde_json::json!({ "from": u.role, "to": role.as_str() })));
    }
    match input.disabled {
        Some(true) if u.disabled_at.is_none() => {
            active.disabled_at = Set(Some(Utc::now()));
            revoke = Some(RevokeReason::Disabled);
            events.push(("user.disabled", serde_json::json!({})));
        }
        Some(false) if u.disabled_at.is_some() => {
            active.disabled_at = Set(None);
            events.push(("user.enabled", serde_json::json!({})));
        }
        _ => {}
    }
    active.updated_at = Set(Utc::now());
    let updated = active.update(&txn).await?;
    let revoked = match revoke {
        Some(reason) => sessions::revoke_user_sessions(&txn, id, None, reason).await?,
        None => Vec::new(),
    };
    if input.name.is_some() && before.name != updated.name {
        events.push(("user.updated", serde_json::json!({ "name": updated.name })));
    }
    for (action, details) in events {
        audit::record(&txn, Entry::new(action).by(Some(admin.user_id)).on("user", id).details(details).client(&client))
            .await?;
    }
    txn.commit().await?;
    sessions::announce(&state, &revoked).await;
    Ok(Json(UserOut::from(&updated)))
}

/// Soft-deletes a user (ADMIN): they disappear from lists and cannot sign in; their sessions
/// end at once. The email stays reserved.
#[utoipa::path(delete, path = "/users/{id}", tag = "users", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 204), (status = 401), (status = 403), (status = 404), (status = 422)))]
#[tracing::instrument(skip_all, fields(user_id = %id))]
async fn delete_user(
    State(state): State<AppState>,
    admin: Authorized<perm::ManageUsers>,
    client: ClientMeta,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, AppError> {
    if id == admin.user_id {
        return Err(AppError::Unprocessable("admins cannot delete themselves".into()));
    }
    let txn = state.db.begin_write().await?;
    let now = Utc::now();
    let res = user::Entity::update_many()
        .col_expr(user::Column::DeletedAt, Expr::value(now))
        .col_expr(user::Column::UpdatedAt, Expr::value(now))
        .filter(user::Column::Id.eq(id))
        .filter(user::Column::DeletedAt.is_null())
        .exec(&txn)
        .await?;
    if res.rows_affected != 1 {
        return Err(AppError::NotFound("user not found".into()));
    }
    let revoked = sessions::revoke_user_sessions(&txn, id, None, RevokeReason::UserDeleted).await?;
    audit::record(&txn, Entry::new("user.deleted").by(Some(admin.user_id)).on("user", id).client(&client)).await?;
    txn.commit().await?;
    sessions::announce(&state, &revoked).await;
    Ok(StatusCode::NO_CONTENT)
}
