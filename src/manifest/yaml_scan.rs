//! A streaming count of a YAML document's events, in constant memory, run before serde_yaml on
//! large YAML text. serde_yaml buffers every event of a document (about 150 bytes each) before
//! it hands the first one to a visitor, so the node budget of [`super::raw`] would fire only
//! after a hostile document of tiny nodes had already cost gigabytes (8 MiB of `[[],[],…]`
//! took 1.1 GB). libyaml is the parser serde_yaml runs, so both passes agree on what the text
//! means; this one keeps nothing but a counter.

use std::mem::MaybeUninit;

use unsafe_libyaml as unsafe_sys;

/// Where the count went over, 1-based like serde_yaml's locations.
pub struct TooMany {
    pub line: usize,
    pub column: usize,
}

/// Owns an initialised libyaml parser and frees it on every path.
struct Parser(Box<MaybeUninit<unsafe_sys::yaml_parser_t>>);

impl Drop for Parser {
    fn drop(&mut self) {
        // SAFETY: only constructed after `yaml_parser_initialize` succeeded on this memory.
        unsafe { unsafe_sys::yaml_parser_delete(self.0.as_mut_ptr()) }
    }
}

/// Counts events up to `max_events`. A syntax error ends the count early and passes: the real
/// parse reports it, with serde_yaml's message.
pub fn within(text: &str, max_events: usize) -> Result<(), TooMany> {
    let mut events = 0usize;
    match walk(text, |_, mark| {
        events += 1;
        (events > max_events).then_some(mark)
    }) {
        Some(at) => Err(at),
        None => Ok(()),
    }
}

/// Where the first alias (`*name`) of the text is, if it has one: settings refuse them, since
/// nothing there needs one and serde_yaml expands each without a bound.
pub fn first_alias(text: &str) -> Option<TooMany> {
    walk(text, |kind, mark| {
        (kind == unsafe_sys::YAML_ALIAS_EVENT).then_some(mark)
    })
}

/// Runs libyaml over `text` until `stop` returns a position, the stream ends, or a syntax
/// error (left to the real parse to report).
fn walk(
    text: &str,
    mut stop: impl FnMut(unsafe_sys::yaml_event_type_t, TooMany) -> Option<TooMany>,
) -> Option<TooMany> {
    let mut memory = Box::new(MaybeUninit::<unsafe_sys::yaml_parser_t>::uninit());
    let p = memory.as_mut_ptr();
    // SAFETY: `p` points to writable memory for a parser; initialise reports failure (out of
    // memory) instead of leaving it half set up.
    if unsafe { unsafe_sys::yaml_parser_initialize(p) }.fail {
        // Nothing could be scanned; the real parse will meet the same shortage and say so.
        return None;
    }
    // Moving the box keeps the parser where it is (`p` stays valid).
    let _parser = Parser(memory);
    // SAFETY: the parser is initialised; `text` outlives it (both end with this function).
    unsafe {
        unsafe_sys::yaml_parser_set_encoding(p, unsafe_sys::YAML_UTF8_ENCODING);
        unsafe_sys::yaml_parser_set_input_string(p, text.as_ptr(), text.len() as u64);
    }
    loop {
        let mut event = MaybeUninit::<unsafe_sys::yaml_event_t>::uninit();
        let e = event.as_mut_ptr();
        // SAFETY: parse writes a whole event on success; on failure nothing is to be freed.
        if unsafe { unsafe_sys::yaml_parser_parse(p, e) }.fail {
            return None;
        }
        // SAFETY: `e` holds the event just parsed; it is read, then freed exactly once.
        let (kind, mark) = unsafe { ((*e).type_, (*e).start_mark) };
        unsafe { unsafe_sys::yaml_event_delete(e) };
        let at = TooMany {
            line: mark.line as usize + 1,
            column: mark.column as usize + 1,
        };
        if let Some(at) = stop(kind, at) {
            return Some(at);
        }
        if kind == unsafe_sys::YAML_STREAM_END_EVENT {
            return None;
        }
    }
}
