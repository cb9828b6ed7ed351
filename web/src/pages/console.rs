//! The MCP test console: pick a server (or every server at `/mcp`), list its tools, fill a
//! form generated from the tool's input schema (or raw JSON), call it and see the result, the
//! duration and the progress it reported. Calls go through the admin API on the admin's
//! behalf (audited): the UI never holds an MCP token.

use leptos::prelude::*;
use leptos::task::spawn_local;
use serde_json::{Map, Value, json};
use shared::console::{ConsoleCall, ConsoleResult, ConsoleTarget, ConsoleTool};

use crate::api;
use crate::components::widgets::ErrorAlert;
use crate::resource::Load;

#[component]
pub fn Console() -> impl IntoView {
    let servers = Load::new(|| async { api::list_servers().await });
    let target = RwSignal::new(String::new());
    let tools = RwSignal::new(Vec::<ConsoleTool>::new());
    let selected = RwSignal::new(None::<ConsoleTool>);
    let args = RwSignal::new(Value::Object(Map::new()));
    let raw = RwSignal::new("{}".to_string());
    let raw_mode = RwSignal::new(false);
    let busy = RwSignal::new(false);
    let error = RwSignal::new(None::<String>);
    let result = RwSignal::new(None::<ConsoleResult>);
    let server_of = move || Some(target.get_untracked()).filter(|s| !s.is_empty());
    let load = move |_| {
        let req = ConsoleTarget {
            server: server_of(),
        };
        busy.set(true);
        spawn_local(async move {
            match api::console_tools(&req).await {
                Ok(list) => {
                    tools.set(list);
                    selected.set(None);
                    error.set(None);
                }
                Err(e) => error.set(Some(e.message)),
            }
            busy.set(false);
        });
    };
    let pick = move |ev: leptos::ev::Event| {
        let name = event_target_value(&ev);
        let tool = tools.with_untracked(|t| t.iter().find(|t| t.name == name).cloned());
        selected.set(tool);
        args.set(Value::Object(Map::new()));
        raw.set("{}".into());
        result.set(None);
    };
    let on_call = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let Some(tool) = selected.get_untracked() else {
            return;
        };
        let arguments = if raw_mode.get_untracked() {
            match serde_json::from_str::<Value>(&raw.get_untracked()) {
                Ok(v) if v.is_object() => v,
                _ => {
                    error.set(Some("the arguments must be a JSON object".into()));
                    return;
                }
            }
        } else {
            args.get_untracked()
        };
        let req = ConsoleCall {
            server: server_of(),
            tool: tool.name,
            arguments,
        };
        busy.set(true);
        spawn_local(async move {
            match api::console_call(&req).await {
                Ok(r) => {
                    result.set(Some(r));
                    error.set(None);
                }
                Err(e) => error.set(Some(e.message)),
            }
            busy.set(false);
        });
    };
    view! {
        <h1>"MCP test console"</h1>
        <p class="muted">"Calls run as you, through the same rules as MCP clients, and are recorded."</p>
        <div class="toolbar">
            <label class="inline">"Endpoint"
                <select id="console-target" on:change=move |ev| target.set(event_target_value(&ev))>
                    <option value="">"all servers (/mcp)"</option>
                    {move || servers.get().and_then(Result::ok).unwrap_or_default().into_iter()
                        .map(|s| view! { <option value=s.name.clone()>{s.name.clone()}</option> }).collect_view()}
                </select>
            </label>
            <button type="button" id="console-load" on:click=load disabled=move || busy.get()>"List tools"</button>
        </div>
        {move || error.get().map(|m| view! { <ErrorAlert message=m /> })}
        {move || (!tools.with(Vec::is_empty)).then(|| view! {
            <label>"Tool"
                <select id="console-tool" on:change=pick>
                    <option value="">"choose a tool"</option>
                    {tools.get().into_iter().map(|t| view! { <option value=t.name.clone()>{t.name.clone()}</option> }).collect_view()}
                </select>
            </label>
        })}
        {move || selected.get().map(|tool| {
            let props: Vec<(String, Value)> = tool.input_schema["properties"]
                .as_object()
                .map(|p| p.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default();
            let required: Vec<String> = tool.input_schema["required"]
                .as_array()
                .map(|r| r.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
                .unwrap_or_default();
            view! {
                <form class="panel stack" id="console-form" on:submit=on_call>
                    <p>{tool.description.clone().unwrap_or_default()}</p>
                    <label class="inline"><input type="checkbox" id="console-raw-toggle" bind:checked=raw_mode />"edit the arguments as JSON"</label>
                    <Show when=move || raw_mode.get() fallback=move || {
                        let props = props.clone();
                        let required = required.clone();
                        view! {
                            {props.into_iter().map(|(name, schema)| {
                                let needed = required.contains(&name);
                                view! { <Field name=name schema=schema required=needed args=args /> }
                            }).collect_view()}
                        }
                    }>
                        <textarea id="console-raw" rows="6" bind:value=raw></textarea>
                    </Show>
                    <button type="submit" id="console-call" disabled=move || busy.get()>
                        {move || if busy.get() { "Calling…" } else { "Call" }}
                    </button>
                </form>
            }
        })}
        {move || result.get().map(|r| view! { <ResultView result=r /> })}
    }
}

/// One argument, by its JSON schema: text, number, checkbox, choice, or JSON for arrays and
/// objects.
#[component]
fn Field(name: String, schema: Value, required: bool, args: RwSignal<Value>) -> impl IntoView {
    let id = format!("console-arg-{name}");
    let label = format!(
        "{name}{}{}",
        if required { " *" } else { "" },
        schema["description"]
            .as_str()
            .map(|d| format!(" — {d}"))
            .unwrap_or_default()
    );
    let key = name.clone();
    let set = move |v: Option<Value>| {
        args.update(|a| {
            if let Some(obj) = a.as_object_mut() {
                match v {
                    Some(v) => {
                        obj.insert(key.clone(), v);
                    }
                    None => {
                        obj.remove(&key);
                    }
                }
            }
        })
    };
    let kind = schema["type"].as_str().unwrap_or("string").to_string();
    let input = if let Some(options) = schema["enum"].as_array().cloned() {
        view! {
            <select id=id on:change=move |ev| {
                let v = event_target_value(&ev);
                set((!v.is_empty()).then(|| serde_json::from_str(&v).unwrap_or(Value::String(v))));
            }>
                <option value="">"—"</option>
                {options.into_iter().map(|o| {
                    let text = o.as_str().map(str::to_string).unwrap_or_else(|| o.to_string());
                    view! { <option value=o.to_string()>{text}</option> }
                }).collect_view()}
            </select>
        }
        .into_any()
    } else {
        match kind.as_str() {
            "boolean" => view! {
                <input type="checkbox" id=id on:change=move |ev| set(Some(json!(event_target_checked(&ev))))/>
            }
            .into_any(),
            "integer" | "number" => {
                let integer = kind == "integer";
                view! {
                    <input type="number" id=id step=if integer { "1" } else { "any" } on:input=move |ev| {
                        let v = event_target_value(&ev);
                        set(if integer {
                            v.parse::<i64>().ok().map(|n| json!(n))
                        } else {
                            v.parse::<f64>().ok().map(|n| json!(n))
                        });
                    }/>
                }
                .into_any()
            }
            "array" | "object" => view! {
                <textarea id=id rows="3" placeholder=if kind == "array" { "[ … ] (JSON)" } else { "{ … } (JSON)" } on:input=move |ev| {
                    set(serde_json::from_str(&event_target_value(&ev)).ok());
                }></textarea>
            }
            .into_any(),
            _ => view! {
                <input type="text" id=id on:input=move |ev| {
                    let v = event_target_value(&ev);
                    set((!v.is_empty()).then_some(Value::String(v)));
                }/>
            }
            .into_any(),
        }
    };
    view! { <label>{label}{input}</label> }
}

#[component]
fn ResultView(result: ConsoleResult) -> impl IntoView {
    let content: Vec<Value> = result
        .result
        .as_ref()
        .and_then(|r| r["content"].as_array().cloned())
        .unwrap_or_default();
    let is_error = result.result.as_ref().is_some_and(|r| r["isError"] == true);
    view! {
        <section class="panel" id="console-result">
            <p class="muted" id="console-duration">{format!("{} ms", result.duration_ms)}
                {(!result.progress.is_empty()).then(|| format!(" · {} progress updates", result.progress.len()))}</p>
            {result.error.clone().map(|e| view! {
                <div class="alert" role="alert" id="console-error">{format!("{} {}", e["code"], e["message"].as_str().unwrap_or_default())}</div>
            })}
            {is_error.then_some(view! { <p class="alert">"The tool reported an error."</p> })}
            <div id="console-content">
                {content.into_iter().map(|item| match item["type"].as_str() {
                    Some("text") => view! { <pre class="console-text">{item["text"].as_str().unwrap_or_default().to_string()}</pre> }.into_any(),
                    Some("image") => {
                        let src = format!("data:{};base64,{}", item["mimeType"].as_str().unwrap_or("image/png"), item["data"].as_str().unwrap_or_default());
                        view! { <img alt="tool result" src=src /> }.into_any()
                    }
                    _ => view! { <pre>{serde_json::to_string_pretty(&item).unwrap_or_default()}</pre> }.into_any(),
                }).collect_view()}
            </div>
            {result.result.as_ref().and_then(|r| r.get("structuredContent")).map(|s| view! {
                <details><summary>"Structured content"</summary><pre>{serde_json::to_string_pretty(s).unwrap_or_default()}</pre></details>
            })}
            {(!result.progress.is_empty()).then(|| view! {
                <details><summary>"Progress"</summary><ol>{result.progress.iter().map(|p| view! {
                    <li>{format!("{} / {}", p["progress"], p["total"])}</li>
                }).collect_view()}</ol></details>
            })}
        </section>
    }
}
