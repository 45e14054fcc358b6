//! Notifications: FCM push against a fake FCM and OAuth2 token server, signed webhooks, alert
//! email, and push-token registration.
