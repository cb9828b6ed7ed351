//! Character classes the gateway's validators and its OpenAPI patterns share (one table each,
//! so a name refused by the server is one the document says it refuses).

/// `char::is_control`: the C0 and C1 controls.
pub const CONTROL: &[(char, char)] = &[('\u{0}', '\u{1F}'), ('\u{7F}', '\u{9F}')];

/// Invisible or direction-changing characters: zero-width, bidirectional controls, tag
/// characters, byte-order marks, variation selectors, fillers, non-characters, other format
/// characters and line/paragraph separators. A name the gateway compares must look to every
/// reader like what it is.
pub const INVISIBLE: &[(char, char)] = &[
    ('\u{AD}', '\u{AD}'),
    ('\u{34F}', '\u{34F}'),
    ('\u{61C}', '\u{61C}'),
    ('\u{115F}', '\u{1160}'),
    ('\u{17B4}', '\u{17B5}'),
    ('\u{180B}', '\u{180F}'),
    ('\u{200B}', '\u{200F}'),
    ('\u{202A}', '\u{202E}'),
    ('\u{2060}', '\u{206F}'),
    ('\u{3164}', '\u{3164}'),
    ('\u{FE00}', '\u{FE0F}'),
    ('\u{FEFF}', '\u{FEFF}'),
    ('\u{FFA0}', '\u{FFA0}'),
    ('\u{FFF0}', '\u{FFFF}'),
    ('\u{E0000}', '\u{E0FFF}'),
    ('\u{600}', '\u{605}'),
    ('\u{6DD}', '\u{6DD}'),
    ('\u{70F}', '\u{70F}'),
    ('\u{8E2}', '\u{8E2}'),
    ('\u{2028}', '\u{2029}'),
    ('\u{110BD}', '\u{110BD}'),
    ('\u{110CD}', '\u{110CD}'),
    ('\u{13430}', '\u{1343F}'),
    ('\u{1BCA0}', '\u{1BCA3}'),
    ('\u{1D173}', '\u{1D17A}'),
];

/// Unicode `White_Space`: what `str::trim` removes and `char::is_whitespace` matches.
pub const WHITESPACE: &[(char, char)] = &[
    ('\u{9}', '\u{D}'),
    ('\u{20}', '\u{20}'),
    ('\u{85}', '\u{85}'),
    ('\u{A0}', '\u{A0}'),
    ('\u{1680}', '\u{1680}'),
    ('\u{2000}', '\u{200A}'),
    ('\u{2028}', '\u{2029}'),
    ('\u{202F}', '\u{202F}'),
    ('\u{205F}', '\u{205F}'),
    ('\u{3000}', '\u{3000}'),
];

/// Whether `c` is in `INVISIBLE` (ASCII never is).
pub fn invisible(c: char) -> bool {
    c >= '\u{AD}'
        && INVISIBLE
            .iter()
            .any(|&(first, last)| (first..=last).contains(&c))
}
