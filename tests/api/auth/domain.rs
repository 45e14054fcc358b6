//! Identity's domain functions called directly, with the state of `spawn_app()` and no HTTP,
//! and the database's own guard on identity's closed sets.

use mash::{
    auth::{
        AuthError, AuthUser, ClientMeta,
        login::{LoginOutcome, login},
        refresh, register, sessions,
        types::{LoginIn, RegisterIn},
    },
    users::entity::user,
};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, sea_query::Expr};

use crate::helpers::{accounts::unique_email, spawn_app};

const PASSWORD: &str = "a passphrase nobody guesses";

fn client() -> ClientMeta {
    ClientMeta { ip: None, user_agent: Some("domain tests".into()) }
}

fn sign_up(email: &str) -> RegisterIn {
    RegisterIn {
        email: email.into(),
        password: PASSWORD.into(),
        name: "Ada".into(),
        device_id: None,
        device_name: None,
    }
}

fn sign_in(email: &str, password: &str) -> LoginIn {
    LoginIn { email: email.into(), password: password.into(), device_id: Some("phone-1".into()), device_name: None }
}

#[tokio::test]
async fn register_login_refresh_and_sessions_without_http() {
    let app = spawn_app().await;
    let state = &app.state;
    let email = unique_email("domain");
    let (u, first) = register::register(state, &sign_up(&email), &client()).await.unwrap();
    assert_eq!(u.role, mash::auth::Role::Customer);
    assert!(matches!(register::register(state, &sign_up(&email), &client()).await, Err(AuthError::EmailTaken)));

    assert!(matches!(login(state, &sign_in(&email, "wrong"), &client()).await, Err(AuthError::BadCredentials)));
    let Ok(LoginOutcome::SignedIn(signed_in, second)) = login(state, &sign_in(&email, PASSWORD), &client()).await
    else {
        panic!("the right password signs in");
    };
    assert_eq!(signed_in.id, u.id);

    // Rotation: the new pair works once; the old token presented again ends the session.
    let rotated = refresh::refresh(state, &second.refresh_token, &client()).await.unwrap();
    assert_ne!(rotated.refresh_token, second.refresh_token);
    assert!(matches!(
        refresh::refresh(state, &second.refresh_token, &client()).await,
        Err(AuthError::InvalidRefreshToken)
    ));
    assert!(matches!(
        refresh::refresh(state, &rotated.refresh_token, &client()).await,
        Err(AuthError::InvalidRefreshToken)
    ));

    // The register session is the one left.
    let me = mash::auth::extract::authenticate(state, &first.access_token).unwrap();
    let live = sessions::list(state, &me).await.unwrap();
    assert_eq!(live.iter().map(|s| (s.id, s.current)).collect::<Vec<_>>(), [(me.session_id, true)]);
    let stranger = AuthUser { user_id: uuid::Uuid::now_v7(), ..me.clone() };
    assert!(matches!(
        sessions::delete(state, &stranger, me.session_id, &client()).await,
        Err(AuthError::SessionNotFound)
    ));
    sessions::delete(state, &me, me.session_id, &client()).await.unwrap();
    assert!(matches!(mash::auth::extract::authenticate(state, &first.access_token), Err(AuthError::SessionRevoked)));
}

#[tokio::test]
async fn the_database_refuses_values_outside_identitys_closed_sets() {
    let app = spawn_app().await;
    let db = &app.state.db;
    let (u, _) = register::register(&app.state, &sign_up(&unique_email("closed")), &client()).await.unwrap();
    let set_role = |role: &'static str| {
        user::Entity::update_many().col_expr(user::Column::Role, Expr::value(role)).filter(user::Column::Id.eq(u.id))
    };
    assert!(set_role("ROOT").exec(db).await.is_err(), "an unknown role is refused");
    assert!(set_role("admin").exec(db).await.is_err(), "roles are case-sensitive");
    set_role("GROWER").exec(db).await.expect("a known role is stored");
    let row = user::Entity::find_by_id(u.id).one(db).await.unwrap().unwrap();
    assert_eq!(row.role, mash::auth::Role::Grower);

    use mash::auth::entity::{one_time_token, session};
    let reason = |r: &'static str| {
        session::Entity::update_many()
            .col_expr(session::Column::RevokedReason, Expr::value(r))
            .filter(session::Column::UserId.eq(u.id))
    };
    assert!(reason("bored").exec(db).await.is_err(), "an unknown revocation reason is refused");
    assert_eq!(reason("logout").exec(db).await.unwrap().rows_affected, 1);
    let purpose = one_time_token::Entity::update_many()
        .col_expr(one_time_token::Column::Purpose, Expr::value("anything"))
        .filter(one_time_token::Column::UserId.eq(u.id));
    assert!(purpose.exec(db).await.is_err(), "an unknown token purpose is refused");

    let insert = |role: &str| {
        format!(
            "INSERT INTO users (id, email, name, role, email_verified, mfa_enabled) \
             VALUES ('{}', '{}', 'X', '{role}', false, false)",
            uuid::Uuid::now_v7(),
            unique_email("raw")
        )
    };
    assert!(db.execute_unprepared(&insert("OWNER")).await.is_err(), "an insert with an unknown role is refused");
    db.execute_unprepared(&insert("VENDOR")).await.expect("the same insert with a known role is stored");
}
