//! What the three ARM clients ([`super::web`], [`super::connections`], [`super::automation`])
//! share: the endpoint, the bearer token for `{arm}/.default`, resource-id paths and one
//! request helper, whose every try is paced by the process's ARM buckets ([`super::pacer`]).
//! Each client keeps its own api-version constant; all return [`super::Error`].

use std::sync::Arc;

use azure_core::credentials::TokenCredential;

use super::common::{Bearer, Failure, Idempotency, Reply, ServiceOptions};
use crate::cloud::Cloud;
use crate::policy::model::ArmResource;

#[derive(Clone)]
pub(crate) struct Arm {
    pub options: ServiceOptions,
    pub bearer: Bearer,
    pub endpoint: String,
}

impl Arm {
    pub(crate) fn new(
        cloud: Cloud,
        credential: Arc<dyn TokenCredential>,
        options: ServiceOptions,
    ) -> Self {
        Self {
            options,
            bearer: Bearer::new(credential, cloud.arm_scope()),
            endpoint: cloud.arm_endpoint().to_string(),
        }
    }

    /// `/subscriptions/{s}/resourceGroups/{rg}/providers/{provider_type}/{name}`; names are
    /// path-escaped so a stray `/` or `?` in a policy cannot address another resource.
    pub(crate) fn resource_id(r: &ArmResource, provider_type: &str) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}/providers/{provider_type}/{}",
            esc(&r.subscription),
            esc(&r.resource_group),
            esc(&r.name)
        )
    }

    pub(crate) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        api_version: &str,
        body: Option<&serde_json::Value>,
        idempotency: Idempotency,
    ) -> Result<Reply, Failure> {
        let url = format!("{}{path}", self.endpoint);
        let paced = super::common::Paced {
            pacer: &self.options.arm_pacer,
            path,
            method: &method,
        };
        let (retry, bearer) = (&self.options.retry, Some(&self.bearer));
        super::common::send_paced(retry, idempotency, bearer, Some(paced), || {
            let mut req = self
                .options
                .http
                .request(method.clone(), &url)
                .query(&[("api-version", api_version)]);
            req = match body {
                Some(b) => req.json(b),
                // ARM wants an explicit empty body on POST actions.
                None if method == reqwest::Method::POST => req.header("content-length", "0"),
                None => req,
            };
            req
        })
        .await
    }
}

/// Percent-escapes one path segment.
pub(crate) fn esc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_ids_escape_names() {
        let r = ArmResource {
            subscription: "s1".into(),
            resource_group: "rg".into(),
            name: "a/b?c".into(),
            slot: None,
        };
        assert_eq!(
            Arm::resource_id(&r, "Microsoft.Web/sites"),
            "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Web/sites/a%2Fb%3Fc"
        );
    }
}
