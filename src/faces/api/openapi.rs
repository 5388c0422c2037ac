//! The OpenAPI 3.1 document, generated from the handlers by `utoipa`.

use axum::response::IntoResponse;
use utoipa::OpenApi;

use super::*;

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "service",
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object)),
    security(("bearer" = [])))]
pub(super) async fn openapi_json() -> impl IntoResponse {
    axum::Json(ApiDoc::openapi())
}

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "huoltosync API", description = "The mirror of Tampuuri tickets, its change feed and the outbox, for the contractor's own systems. Every endpoint needs `Authorization: Bearer <token>` ([[api.tokens]]); errors are application/problem+json (RFC 9457)."),
    paths(handlers::list_tickets, handlers::get_ticket, write::accept, write::hold, write::done,
          write::create, feed::changes, handlers::list_outbox, write::retry, write::cancel,
          handlers::status, handlers::cost, openapi_json),
    components(schemas(Problem, write::AcceptBody, write::HoldBody, write::DoneBody,
                       write::NewTicketBody, write::AttachmentBody)),
    modifiers(&BearerAuth),
)]
struct ApiDoc;

/// The OpenAPI 3.1 document of this API, as `GET /api/v1/openapi.json` serves it and
/// `docs/openapi.json` holds it (`huoltosync openapi > docs/openapi.json`).
pub fn openapi() -> String {
    ApiDoc::openapi()
        .to_pretty_json()
        .expect("the document serializes")
        + "\n"
}
