//! Procedural macros of kafkaesk. Use them through the `kafkaesk` crate:
//! `#[kafkaesk::schema(...)]` and `#[kafkaesk::subscribe(...)]`.
#![forbid(unsafe_code)]

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{quote, quote_spanned};
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, ExprArray, ExprLit, FnArg, Ident, ItemFn, Lit, LitStr, Token};

/// `"positional", key = value, ...`
struct Args {
    positional: Option<LitStr>,
    named: Vec<(Ident, Expr)>,
}

impl Parse for Args {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let mut positional = None;
        if input.peek(LitStr) {
            positional = Some(input.parse()?);
            if !input.is_empty() {
                input.parse::<Token![,]>()?;
            }
        }
        let mut named = Vec::new();
        let pairs = Punctuated::<NamedArg, Token![,]>::parse_terminated(input)?;
        for pair in pairs {
            if named.iter().any(|(k, _): &(Ident, Expr)| *k == pair.key) {
                return Err(syn::Error::new(pair.key.span(), "argument given twice"));
            }
            named.push((pair.key, pair.value));
        }
        Ok(Args { positional, named })
    }
}

struct NamedArg {
    key: Ident,
    value: Expr,
}

impl Parse for NamedArg {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let key: Ident = input.parse()?;
        input.parse::<Token![=]>()?;
        let value: Expr = input.parse()?;
        Ok(NamedArg { key, value })
    }
}

impl Args {
    fn take(&mut self, name: &str) -> Option<Expr> {
        let index = self.named.iter().position(|(k, _)| k == name)?;
        Some(self.named.remove(index).1)
    }

    fn reject_unknown(&self, allowed: &str) -> syn::Result<()> {
        match self.named.first() {
            Some((key, _)) => Err(syn::Error::new(
                key.span(),
                format!("unknown argument `{key}`; expected {allowed}"),
            )),
            None => Ok(()),
        }
    }
}

fn lit_str(expr: &Expr, what: &str) -> syn::Result<LitStr> {
    match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) => Ok(s.clone()),
        other => Err(syn::Error::new(
            other.span(),
            format!("{what} must be a string literal"),
        )),
    }
}

fn lit_bool(expr: &Expr, what: &str) -> syn::Result<bool> {
    match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Bool(b), ..
        }) => Ok(b.value),
        other => Err(syn::Error::new(
            other.span(),
            format!("{what} must be `true` or `false`"),
        )),
    }
}

fn lit_int(expr: &Expr, what: &str) -> syn::Result<u64> {
    match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Int(i), ..
        }) => i.base10_parse(),
        other => Err(syn::Error::new(
            other.span(),
            format!("{what} must be a whole number"),
        )),
    }
}

fn lit_seconds(expr: &Expr, what: &str) -> syn::Result<f64> {
    let value = match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Int(i), ..
        }) => i.base10_parse::<u64>()? as f64,
        Expr::Lit(ExprLit {
            lit: Lit::Float(f), ..
        }) => f.base10_parse::<f64>()?,
        other => {
            return Err(syn::Error::new(
                other.span(),
                format!("{what} must be a number of seconds"),
            ))
        }
    };
    if !(value > 0.0 && value.is_finite()) {
        return Err(syn::Error::new(
            expr.span(),
            format!("{what} must be more than zero seconds"),
        ));
    }
    Ok(value)
}

/// `retry = N, backoff = secs, on_error = "stop" | "skip", dead_letter = "stream"`
/// as an `ErrorPolicy` expression, or `None` when none of them is given.
fn error_policy(args: &mut Args) -> syn::Result<Option<TokenStream2>> {
    let retry = args.take("retry");
    let backoff = args.take("backoff");
    let on_error = args.take("on_error");
    let dead_letter = args.take("dead_letter");
    let retry_in = args.take("retry_in");
    if retry.is_none()
        && backoff.is_none()
        && on_error.is_none()
        && dead_letter.is_none()
        && retry_in.is_none()
    {
        return Ok(None);
    }
    let mut policy = match &retry {
        Some(retry) => {
            let attempts = lit_int(retry, "retry")?;
            let attempts = u32::try_from(attempts)
                .map_err(|_| syn::Error::new(retry.span(), "retry is a number of attempts"))?;
            let backoff = match &backoff {
                Some(backoff) => lit_seconds(backoff, "backoff")?,
                None => 0.1,
            };
            quote!(::kafkaesk::ErrorPolicy::retry(
                #attempts,
                ::core::time::Duration::from_secs_f64(#backoff)
            ))
        }
        None => {
            if let Some(backoff) = &backoff {
                return Err(syn::Error::new(
                    backoff.span(),
                    "`backoff` needs `retry = N` (how many times to retry)",
                ));
            }
            quote!(::kafkaesk::ErrorPolicy::stop())
        }
    };
    let action = on_error
        .as_ref()
        .map(|expr| lit_str(expr, "on_error").map(|lit| (expr, lit.value())))
        .transpose()?;
    if let Some(delays) = &retry_in {
        let millis = duration_array(delays, "retry_in")?;
        let ends =
            dead_letter.is_some() || action.as_ref().is_some_and(|(_, action)| action == "skip");
        if !ends {
            return Err(syn::Error::new(
                delays.span(),
                "retry streams end in a dead-letter stream or a skip: add \
                 `dead_letter = \"stream\"` or `on_error = \"skip\"`",
            ));
        }
        policy.extend(quote!(.then_retry_in([#(::core::time::Duration::from_millis(#millis)),*])));
    }
    match (action, &dead_letter) {
        (Some((expr, action)), Some(_)) if action != "dead_letter" => {
            return Err(syn::Error::new(
                expr.span(),
                format!("`on_error = \"{action}\"` contradicts `dead_letter`; keep one"),
            ))
        }
        (_, Some(stream)) => {
            let stream = lit_str(stream, "dead_letter")?;
            if stream.value().is_empty() {
                return Err(syn::Error::new(
                    stream.span(),
                    "the dead-letter stream is empty",
                ));
            }
            policy.extend(quote!(.then_dead_letter(#stream)));
        }
        (Some((expr, action)), None) => match action.as_str() {
            "stop" => policy.extend(quote!(.then_stop())),
            "skip" => policy.extend(quote!(.then_skip())),
            "dead_letter" => {
                return Err(syn::Error::new(
                    expr.span(),
                    "name the stream: `dead_letter = \"orders.dead\"`",
                ))
            }
            other => {
                return Err(syn::Error::new(
                    expr.span(),
                    format!(
                        "unknown on_error `{other}`; use \"stop\", \"skip\", or \
                         `dead_letter = \"stream\"`"
                    ),
                ))
            }
        },
        (None, None) => {}
    }
    Ok(Some(policy))
}

fn str_array(expr: &Expr, what: &str) -> syn::Result<Vec<LitStr>> {
    match expr {
        Expr::Array(ExprArray { elems, .. }) => elems.iter().map(|e| lit_str(e, what)).collect(),
        other => Err(syn::Error::new(
            other.span(),
            format!("{what} must be an array of string literals, like [\"a\", \"b\"]"),
        )),
    }
}

fn int_array(expr: &Expr, what: &str) -> syn::Result<Vec<i32>> {
    let fail = |span| {
        syn::Error::new(
            span,
            format!("{what} must be an array of partition numbers, like [0, 1]"),
        )
    };
    match expr {
        Expr::Array(ExprArray { elems, .. }) if !elems.is_empty() => elems
            .iter()
            .map(|e| match e {
                Expr::Lit(ExprLit {
                    lit: Lit::Int(i), ..
                }) => i.base10_parse::<i32>(),
                other => Err(fail(other.span())),
            })
            .collect(),
        other => Err(fail(other.span())),
    }
}

/// `["10s", "1m", "500ms", "2h"]` (or numbers of seconds) as milliseconds.
fn duration_array(expr: &Expr, what: &str) -> syn::Result<Vec<u64>> {
    let fail = |span| {
        syn::Error::new(
            span,
            format!("{what} must be an array of delays, like [\"10s\", \"1m\", \"10m\"] (ms, s, m or h)"),
        )
    };
    let Expr::Array(ExprArray { elems, .. }) = expr else {
        return Err(fail(expr.span()));
    };
    if elems.is_empty() {
        return Err(fail(expr.span()));
    }
    elems
        .iter()
        .map(|e| {
            let millis = match e {
                Expr::Lit(ExprLit {
                    lit: Lit::Str(text),
                    ..
                }) => parse_delay(&text.value()),
                Expr::Lit(ExprLit {
                    lit: Lit::Int(i), ..
                }) => i
                    .base10_parse::<u64>()
                    .ok()
                    .and_then(|s| s.checked_mul(1000)),
                _ => None,
            };
            millis.filter(|m| *m > 0).ok_or_else(|| fail(e.span()))
        })
        .collect()
}

/// `"10s"` as milliseconds; `None` if it does not parse.
fn parse_delay(text: &str) -> Option<u64> {
    let text = text.trim();
    let digits = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(digits);
    let number: u64 = number.parse().ok()?;
    let factor = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return None,
    };
    number.checked_mul(factor)
}

/// A start position, as `kafkaesk::subscription::Position` parses it, checked
/// here so a typo fails the build.
fn position(expr: &Expr, what: &str) -> syn::Result<TokenStream2> {
    let text = lit_str(expr, what)?;
    let value = text.value();
    let value = value.trim();
    let invalid = |why: String| {
        syn::Error::new(
            text.span(),
            format!(
                "`{value}` is not a position{why}: use \"earliest\", \"latest\", an offset \
                 (\"42\"), a UTC time (\"2026-12-03T10:00:00Z\") or a time ago (\"-24h\")"
            ),
        )
    };
    let position = quote!(::kafkaesk::subscription::Position);
    let since_epoch = |d: std::time::Duration| {
        let (secs, nanos) = (d.as_secs(), d.subsec_nanos());
        quote!(::core::time::Duration::new(#secs, #nanos))
    };
    Ok(match value {
        "earliest" => quote!(#position::Earliest),
        "latest" => quote!(#position::Latest),
        _ if value.starts_with('-') => {
            let ago = humantime::parse_duration(&value[1..])
                .map_err(|err| invalid(format!(" ({err})")))?;
            let ago = since_epoch(ago);
            quote!(#position::Since(#ago))
        }
        _ if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
            let offset: i64 = value.parse().map_err(|err| invalid(format!(" ({err})")))?;
            quote!(#position::Offset(#offset))
        }
        _ => {
            let time =
                humantime::parse_rfc3339_weak(value).map_err(|err| invalid(format!(" ({err})")))?;
            let since = since_epoch(
                time.duration_since(std::time::UNIX_EPOCH)
                    .map_err(|_| invalid(" (before 1970)".to_owned()))?,
            );
            quote!(#position::Timestamp(::std::time::UNIX_EPOCH + #since))
        }
    })
}

/// Registers a type as a kafkaesk message schema. See `kafkaesk::schema`.
#[proc_macro_attribute]
pub fn schema(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand_schema(attr.into(), item.into())
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

fn expand_schema(attr: TokenStream2, item: TokenStream2) -> syn::Result<TokenStream2> {
    let mut args: Args = syn::parse2(attr)?;
    let input: syn::DeriveInput = syn::parse2(item.clone())?;
    let id = args.positional.clone().ok_or_else(|| {
        syn::Error::new(
            Span::call_site(),
            "#[schema] needs an id first, like #[schema(\"Content\", version = 1)]",
        )
    })?;
    if id.value().is_empty() || id.value().contains(':') {
        return Err(syn::Error::new(
            id.span(),
            "the schema id must be non-empty and cannot contain `:`",
        ));
    }
    if !input.generics.params.is_empty() {
        return Err(syn::Error::new(
            input.generics.span(),
            "#[schema] types cannot be generic: each schema is one concrete type",
        ));
    }
    let version = match args.take("version") {
        Some(v) => {
            let n = lit_int(&v, "version")?;
            u32::try_from(n).map_err(|_| syn::Error::new(v.span(), "version is too large"))?
        }
        None => 1,
    };
    let retention = match args.take("retention") {
        Some(r) => {
            let secs = lit_int(&r, "retention")?;
            quote!(::core::option::Option::Some(::core::time::Duration::from_secs(#secs)))
        }
        None => quote!(::core::option::Option::None),
    };
    let streams = match args.take("streams") {
        Some(s) => str_array(&s, "streams")?,
        None => Vec::new(),
    };
    args.reject_unknown("`version`, `retention` or `streams`")?;

    let ident = &input.ident;
    Ok(quote! {
        #item

        impl ::kafkaesk::Schema for #ident {
            const ID: &'static str = #id;
            const VERSION: u32 = #version;
            const RETENTION: ::core::option::Option<::core::time::Duration> = #retention;
            const STREAMS: &'static [&'static str] = &[#(#streams),*];
        }

        ::kafkaesk::__private::inventory::submit! {
            ::kafkaesk::__private::SchemaRegistration::of::<#ident>()
        }
    })
}

/// Registers an async function as a kafkaesk subscription. See `kafkaesk::subscribe`.
#[proc_macro_attribute]
pub fn subscribe(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand_subscribe(attr.into(), item.into())
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

fn expand_subscribe(attr: TokenStream2, item: TokenStream2) -> syn::Result<TokenStream2> {
    let mut args: Args = syn::parse2(attr)?;
    let function: ItemFn = syn::parse2(item)?;
    let ident = &function.sig.ident;

    if !function.sig.generics.params.is_empty() {
        return Err(syn::Error::new(
            function.sig.generics.span(),
            "#[subscribe] handlers cannot be generic",
        ));
    }
    let streams_list = args.take("streams");
    let constructor = match (&args.positional, streams_list) {
        (Some(pattern), None) => quote!(::kafkaesk::Subscription::new(#pattern, #ident)),
        (None, Some(list)) => {
            let list = str_array(&list, "streams")?;
            quote!(::kafkaesk::Subscription::for_streams([#(#list),*], #ident))
        }
        (Some(pattern), Some(_)) => {
            return Err(syn::Error::new(
                pattern.span(),
                "give either a pattern or `streams = [...]`, not both",
            ))
        }
        (None, None) => {
            return Err(syn::Error::new(
                Span::call_site(),
                "#[subscribe] needs a stream pattern first, like #[subscribe(\"content.*\")], \
                 or `streams = [\"a\", \"b\"]`",
            ))
        }
    };
    // The function's name by default; unique within an application, so two
    // handlers named alike in different modules need `name = "..."`.
    let name = match args.take("name") {
        Some(name) => lit_str(&name, "name")?.value(),
        None => ident.to_string(),
    };
    let mut options = quote!(.with_name(#name));
    if let Some(group) = args.take("group") {
        let group = lit_str(&group, "group")?;
        options.extend(quote!(.with_group(#group)));
    }
    if let Some(concurrency) = args.take("concurrency") {
        let n = lit_int(&concurrency, "concurrency")?;
        if n == 0 {
            return Err(syn::Error::new(
                concurrency.span(),
                "concurrency must be at least 1",
            ));
        }
        let n = n as usize;
        options.extend(quote!(.with_concurrency(#n)));
    }
    if let Some(timeout) = args.take("timeout") {
        let secs = lit_seconds(&timeout, "timeout")?;
        options.extend(quote!(.with_timeout(::core::time::Duration::from_secs_f64(#secs))));
    }
    if let Some(stall) = args.take("stall_timeout") {
        let secs = lit_seconds(&stall, "stall_timeout")?;
        options.extend(quote!(.with_stall_timeout(::core::time::Duration::from_secs_f64(#secs))));
    }
    if let Some(cancel) = args.take("cancel_stalled") {
        if lit_bool(&cancel, "cancel_stalled")? {
            options.extend(quote!(.cancel_stalled()));
        }
    }
    if let Some(policy) = error_policy(&mut args)? {
        options.extend(quote!(.on_error(#policy)));
    }
    if let Some(exactly_once) = args.take("exactly_once") {
        if lit_bool(&exactly_once, "exactly_once")? {
            options.extend(quote!(.exactly_once()));
        }
    }
    if let Some(start_at) = args.take("start_at") {
        let position = position(&start_at, "start_at")?;
        options.extend(quote!(.with_start_at(#position)));
    }
    if let Some(replay_from) = args.take("replay_from") {
        let position = position(&replay_from, "replay_from")?;
        options.extend(quote!(.replay_from(#position)));
    }
    if let Some(id) = args.take("replay_id") {
        let id = lit_str(&id, "replay_id")?;
        options.extend(quote!(.with_replay_id(#id)));
    }
    if let Some(partitions) = args.take("partitions") {
        let partitions = int_array(&partitions, "partitions")?;
        options.extend(quote!(.with_partitions([#(#partitions),*])));
    }
    if let Some(order) = args.take("order") {
        let text = lit_str(&order, "order")?;
        let variant = match text.value().as_str() {
            "unordered" => quote!(Unordered),
            "key" => quote!(Key),
            "partition" => quote!(Partition),
            _ => {
                return Err(syn::Error::new(
                    text.span(),
                    "order must be \"unordered\", \"key\" or \"partition\"",
                ))
            }
        };
        options.extend(quote!(.with_order(::kafkaesk::subscription::RecordOrder::#variant)));
    }
    if let Some(parallel) = args.take("parallel") {
        if lit_bool(&parallel, "parallel")? {
            options.extend(quote!(.parallel()));
        }
    }
    if let Some(without_group) = args.take("without_group") {
        if lit_bool(&without_group, "without_group")? {
            options.extend(quote!(.without_group()));
        }
    }
    args.reject_unknown(
        "`name`, `group`, `concurrency`, `timeout`, `stall_timeout`, `cancel_stalled`, `streams`, \
         `retry`, `backoff`, `retry_in`, `on_error`, `dead_letter`, `exactly_once`, `start_at`, `replay_from`, `replay_id`, `partitions`, \
         `order`, `parallel` or `without_group`",
    )?;

    let mut checks = Vec::new();
    for (index, input) in function.sig.inputs.iter().enumerate() {
        let ty = match input {
            FnArg::Typed(typed) => &typed.ty,
            FnArg::Receiver(receiver) => {
                return Err(syn::Error::new(
                    receiver.span(),
                    "#[subscribe] works on free functions, not methods",
                ))
            }
        };
        // Spanned on the parameter's type, so an unsupported type is reported there.
        let check = if index == 0 {
            quote_spanned!(ty.span()=> ::kafkaesk::__private::assert_from_message::<#ty>())
        } else {
            quote_spanned!(ty.span()=> ::kafkaesk::__private::assert_from_context::<#ty>())
        };
        checks.push(quote!(const _: () = #check;));
    }
    if function.sig.inputs.is_empty() {
        return Err(syn::Error::new(
            function.sig.span(),
            "a handler needs at least one parameter: the message (a schema type, \
             serde_json::Value, Vec<u8> or kafkaesk::Record)",
        ));
    }
    if function.sig.inputs.len() > 7 {
        return Err(syn::Error::new(
            function.sig.inputs.span(),
            "a handler takes at most 7 parameters",
        ));
    }

    Ok(quote! {
        #function

        const _: () = {
            #(#checks)*

            fn build() -> ::kafkaesk::Subscription {
                #constructor #options
            }

            ::kafkaesk::__private::inventory::submit! {
                ::kafkaesk::__private::SubscriptionRegistration { build }
            }
        };
    })
}
