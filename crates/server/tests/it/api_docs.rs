//! The API documents and their UI, served by the binary: OpenAPI 3.1 at
//! `/openapi.json`, AsyncAPI 3.0 at `/asyncapi.json`, Swagger UI at
//! `/docs/` with its assets from the binary (no CDN). The JS suites check
//! real answers, pushes and acks against the documents
//! (tests-js/lib/conformance.mjs).

use serde_json::Value;

use crate::common::*;

#[tokio::test]
async fn the_documents_and_their_ui_are_served_without_a_cdn() {
    let app = TestApp::spawn().await;
    let get = |path: &'static str| {
        let (http, url) = (app.http.clone(), app.url(path));
        async move { http.get(url).send().await.unwrap() }
    };
    let openapi: Value = get("/openapi.json").await.json().await.unwrap();
    assert_eq!(openapi["openapi"], "3.1.0");
    assert!(openapi["paths"]["/api/call-sessions/{id}/confirm"]["post"].is_object());
    assert_eq!(
        openapi["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    let asyncapi: Value = get("/asyncapi.json").await.json().await.unwrap();
    assert_eq!(asyncapi["asyncapi"], "3.0.0");
    assert_eq!(
        asyncapi["components"]["messages"]["server.call_invitation"]["payload"]["$ref"],
        "#/components/schemas/CallView"
    );

    let page = get("/docs/").await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    for asset in [
        "swagger-ui-bundle.js",
        "swagger-ui.css",
        "swagger-initializer.js",
    ] {
        assert!(html.contains(asset), "{asset} not in the page");
        let path: &'static str = Box::leak(format!("/docs/{asset}").into_boxed_str());
        assert_eq!(get(path).await.status(), 200, "{asset}");
    }
    let init = get("/docs/swagger-initializer.js")
        .await
        .text()
        .await
        .unwrap();
    assert!(init.contains("/openapi.json"), "{init}");
    // Everything the page loads comes from consultd itself.
    for text in [&html, &init] {
        assert!(!text.contains("https://"), "an external URL: {text}");
        assert!(!text.contains("//unpkg") && !text.contains("cdn"), "{text}");
    }
    app.stop().await;
}
