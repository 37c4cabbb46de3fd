//! The Azure Functions custom-handler protocol and the functions served over it.
//!
//! - [`protocol`]: the host's invocation envelope and the handler's response, parsed leniently.
//! - [`server`]: the axum server ([`server::run`]), readiness, envelope-level errors.
//! - [`functions`]: RotateSecrets (timer), SelfTest, Operate, Rotate and StatusPage (HTTP).
//! - [`auth`]: the app roles App Service authentication sends (optional, after function keys).
//! - [`runs`]: the in-memory registry of spawned runs (what a dropped request leaves behind).
//! - [`specs`]: `function-specs/` and host.json checks the JSON schemas miss (NCRONTAB, binding
//!   types, routes); used by `package` and the spec tests.
//! - [`crate::engine::service`] (the engine's): the trait the handler calls and the engine implements.

//!
//! # The contract with the Functions host
//!
//! Read from the host's source (Azure/azure-functions-host v4, `src/WebJobs.Script/`;
//! Azure/azure-webjobs-sdk; Azure/azure-webjobs-sdk-extensions), with `enableForwardingHttpRequest:
//! false` (host.json). `crate::dev::host` builds every invocation by these rules, citing the
//! same files, and is the only way the tests and dev mode call the handler.
//!
//! Calls. Every function, HTTP ones too, is `POST /{FunctionName}` with
//! `X-Azure-Functions-HostVersion`, `X-Azure-Functions-InvocationId` and
//! `User-Agent: Azure-Functions-Host/{version}`, a body `{"Data", "Metadata"}` in
//! `application/json; charset=utf-8`, sent chunked (`Workers/Http/DefaultHttpWorkerService.cs`,
//! `Workers/Http/HttpWorkerConstants.cs`, `Workers/MessageExtensions/HttpScriptInvocationContextExtensions.cs`).
//! Readiness is any answer to `GET /`, polled every 25 ms.
//!
//! Metadata (`Workers/MessageExtensions/ScriptInvocationContextExtensions.cs`): the binding data
//! minus nulls, the HTTP request and keys ending in "trigger"; objects as objects, everything else
//! JSON-encoded into a string (route value `x` arrives as `"\"x\""`). For an HTTP trigger the
//! binding data holds the caller's top-level JSON body properties (Content-Length > 0 only), query
//! parameters but `code`, route values, `Query` and `Headers` (extensions
//! `WebJobs.Extensions.Http/HttpTriggerAttributeBindingProvider.cs`, `Utility.cs`).
//!
//! The clock. `sys` = `{MethodName, UtcNow, RandGuid}` is written at `sys`, or at `$sys` when the
//! caller already supplied a `sys` (webjobs-sdk `Bindings/SystemBindingData.cs`: "user data takes
//! precedence"; the dictionary ignores case). So the handler's now is `$sys.UtcNow` exactly when
//! the caller's query, body or route supplied a `sys`, else `sys.UtcNow`; a caller's `$sys` alone
//! is ignored, and when the host's object cannot be told apart (a body Newtonsoft may read as JSON
//! but serde cannot) or read, the handler uses its own clock and says so in `Logs`. Nothing a
//! caller sends fails the invocation or reaches the engine as its clock
//! ([`protocol::InvocationRequest::sys`]).
//!
//! Data. Timer: `{Schedule: {AdjustForDST}, ScheduleStatus: {Last, Next, LastUpdated} | null,
//! IsPastDue}`; a first run has `Last` = `0001-01-01T00:00:00+00:00` (extensions
//! `Extensions/Timers/Listener/TimerListener.cs`). HTTP (`Extensions/HttpRequestExtensions.cs`):
//! `Url`, `Method`, `Query` (object; the docs' older string form is still read), `Headers`
//! (object of arrays), `Params` (always; `{}` or `{"credential": null}`), `Identities`, `Body`
//! (a string, base64 for octet-stream and multipart, absent unless Content-Length > 0).
//!
//! Answers (`DefaultHttpWorkerService.cs`, `Binding/Http/HttpBinding.cs`, `RawScriptResult.cs`):
//! a non-2xx fails the invocation and the host reads nothing of it, `Logs` included
//! (`EnsureSuccessStatusCode` comes before `ProcessLogsFromHttpResponse`); otherwise JSON
//! `{Outputs, Logs, ReturnValue}`, each `Logs` line logged for the invocation, `Outputs.res`
//! with `statusCode` (number or numeric string), scalar header values, a content type and a
//! non-empty body (an empty or `null` answer leaves the invocation waiting until it times out).
//! What each outcome is made to look like in the host's invocation results is in
//! [`functions`] and the README ("What the host records").

pub mod auth;
pub mod functions;
pub mod protocol;
pub mod runs;
pub mod server;
pub mod specs;

pub use server::{Backend, HandlerOptions, StartupError, run};
