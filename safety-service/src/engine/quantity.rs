//! Kubernetes resource quantities (`100m`, `0.5`, `2Gi`, `1e3`, `512Mi`, `2k`), parsed exactly as
//! apimachinery's `ParseQuantity` does: the same grammar (including its oddities such as `.` and
//! `-` meaning zero), values rounded up to the nano away from zero, capped at the int64 range.

use num_bigint::BigUint;

/// An exact quantity in nano-units (1e-9 of the base unit), already rounded and capped as
/// Kubernetes stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Quantity {
    nanos: i128,
}

/// Why a string is not a quantity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error(
        "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
    )]
    Format,
    #[error("unable to parse quantity's suffix")]
    Suffix,
}

const NANOS_PER_UNIT: i128 = 1_000_000_000;
/// The largest magnitude Kubernetes keeps: int64 max, in units.
const MAX_NANOS: i128 = i64::MAX as i128 * NANOS_PER_UNIT;
/// Significant digits kept before the rest folds into a "something was there" bit. Enough that
/// the rounding step after a binary suffix (at most 2^60) stays below one nano.
const KEPT_DIGITS: usize = 60;

impl Quantity {
    pub const ZERO: Quantity = Quantity { nanos: 0 };

    /// Parses a quantity string the way `resource.ParseQuantity` does.
    pub fn parse(text: &str) -> Result<Quantity, QuantityError> {
        if text.is_empty() {
            return Err(QuantityError::Format);
        }
        let parts = split(text)?;
        let (exp10, exp2) = interpret_suffix(parts.suffix).ok_or(QuantityError::Suffix)?;
        let scale = i64::from(exp10) - parts.fraction.len() as i64 + 9;
        let magnitude = to_nanos(parts.whole, parts.fraction, scale, exp2);
        Ok(Quantity {
            nanos: if parts.negative {
                -magnitude
            } else {
                magnitude
            },
        })
    }

    pub fn from_units(units: i64) -> Quantity {
        Quantity {
            nanos: i128::from(units) * NANOS_PER_UNIT,
        }
    }

    /// An amount in nanos, capped to the range Kubernetes keeps.
    pub fn from_nanos(nanos: i128) -> Quantity {
        Quantity {
            nanos: nanos.clamp(-MAX_NANOS, MAX_NANOS),
        }
    }

    pub fn nanos(self) -> i128 {
        self.nanos
    }

    /// `Quantity.MilliValue()`: thousandths, rounded up away from zero, saturating.
    pub fn milli_value(self) -> i64 {
        scaled(self.nanos, 1_000_000)
    }

    /// `Quantity.Value()`: whole units, rounded up away from zero, saturating.
    pub fn value(self) -> i64 {
        scaled(self.nanos, NANOS_PER_UNIT)
    }
}

fn scaled(nanos: i128, per: i128) -> i64 {
    let quotient = nanos / per;
    let rounded = if nanos % per == 0 {
        quotient
    } else if nanos > 0 {
        quotient + 1
    } else {
        quotient - 1
    };
    rounded.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

struct Parts<'a> {
    negative: bool,
    /// Integer digits without leading zeros (may be empty).
    whole: &'a str,
    fraction: &'a str,
    suffix: &'a str,
}

/// The scanner of apimachinery's `parseQuantityString`.
fn split(text: &str) -> Result<Parts<'_>, QuantityError> {
    let bytes = text.as_bytes();
    let end = bytes.len();
    let mut pos = 0;
    let mut negative = false;
    match bytes.first() {
        Some(b'-') => {
            negative = true;
            pos += 1;
        }
        Some(b'+') => pos += 1,
        _ => {}
    }
    while pos < end && bytes[pos] == b'0' {
        pos += 1;
    }
    let zero = Parts {
        negative,
        whole: "",
        fraction: "",
        suffix: "",
    };
    if pos >= end {
        return Ok(zero);
    }
    let whole_start = pos;
    while pos < end && bytes[pos].is_ascii_digit() {
        pos += 1;
    }
    let whole = &text[whole_start..pos];
    let mut fraction = "";
    if pos < end && bytes[pos] == b'.' {
        pos += 1;
        let fraction_start = pos;
        while pos < end && bytes[pos].is_ascii_digit() {
            pos += 1;
        }
        fraction = &text[fraction_start..pos];
    }
    let suffix_start = pos;
    while pos < end && b"eEinumkKMGTP".contains(&bytes[pos]) {
        pos += 1;
    }
    if pos < end && (bytes[pos] == b'-' || bytes[pos] == b'+') {
        pos += 1;
    }
    while pos < end && bytes[pos].is_ascii_digit() {
        pos += 1;
    }
    if pos < end {
        return Err(QuantityError::Format);
    }
    Ok(Parts {
        negative,
        whole,
        fraction,
        suffix: &text[suffix_start..],
    })
}

/// (power of ten, power of two) of a suffix, or `None` when apimachinery rejects it.
fn interpret_suffix(suffix: &str) -> Option<(i32, u32)> {
    let decimal = match suffix {
        "n" => Some(-9),
        "u" => Some(-6),
        "m" => Some(-3),
        "" => Some(0),
        "k" => Some(3),
        "M" => Some(6),
        "G" => Some(9),
        "T" => Some(12),
        "P" => Some(15),
        "E" => Some(18),
        _ => None,
    };
    if let Some(exp10) = decimal {
        return Some((exp10, 0));
    }
    let binary = match suffix {
        "Ki" => Some(10),
        "Mi" => Some(20),
        "Gi" => Some(30),
        "Ti" => Some(40),
        "Pi" => Some(50),
        "Ei" => Some(60),
        _ => None,
    };
    if let Some(exp2) = binary {
        return Some((0, exp2));
    }
    let rest = suffix.strip_prefix(['e', 'E'])?;
    if rest.is_empty() {
        return None;
    }
    // Go parses an int64 and converts it to int32, wrapping.
    let exponent: i64 = rest.parse().ok()?;
    Some((exponent as i32, 0))
}

/// |(whole ++ fraction) × 10^scale × 2^exp2| in nanos, rounded up, capped at [`MAX_NANOS`].
fn to_nanos(whole: &str, fraction: &str, scale: i64, exp2: u32) -> i128 {
    // `whole` has no leading zeros; when it is empty the fraction's leading zeros go too.
    let (whole, fraction) = if whole.is_empty() {
        ("", fraction.trim_start_matches('0'))
    } else {
        (whole, fraction)
    };
    let length = whole.len() + fraction.len();
    if length == 0 {
        return 0;
    }
    let magnitude = length as i64 + scale;
    if magnitude > 29 {
        return MAX_NANOS; // at least 10^29 nanos: past the cap
    }
    if magnitude + 19 < 0 {
        return 1; // below one nano even after 2^60: rounds up to the smallest amount
    }
    if length <= 19
        && let Some(value) = small_to_nanos(whole, fraction, scale, exp2)
    {
        return value;
    }
    let digits = format!("{whole}{fraction}");
    // Keep enough significant digits; whatever is dropped only decides the rounding.
    let (kept, dropped) = if digits.len() > KEPT_DIGITS {
        digits.split_at(KEPT_DIGITS)
    } else {
        (digits.as_str(), "")
    };
    let sticky = dropped.bytes().any(|b| b != b'0');
    let scale = scale + dropped.len() as i64;
    let Some(mantissa) = BigUint::parse_bytes(kept.as_bytes(), 10) else {
        return MAX_NANOS; // unreachable: `kept` holds ASCII digits only
    };
    let mantissa = mantissa << exp2;
    let (quotient, exact) = if scale >= 0 {
        (mantissa * BigUint::from(10u32).pow(scale as u32), true)
    } else {
        let divisor = BigUint::from(10u32).pow((-scale) as u32);
        let quotient = &mantissa / &divisor;
        let exact = (&quotient * &divisor) == mantissa;
        (quotient, exact)
    };
    let rounded = if exact && !sticky {
        quotient
    } else {
        quotient + 1u32
    };
    let cap = BigUint::from(MAX_NANOS as u128);
    if rounded > cap {
        MAX_NANOS
    } else {
        let mut value: i128 = 0;
        for digit in rounded.to_u64_digits().iter().rev() {
            value = (value << 64) | i128::from(*digit);
        }
        value
    }
}

/// The common case without big integers: at most 19 digits (so `digits << 60` fits in u128).
fn small_to_nanos(whole: &str, fraction: &str, scale: i64, exp2: u32) -> Option<i128> {
    let mut digits: u128 = 0;
    for byte in whole.bytes().chain(fraction.bytes()) {
        digits = digits * 10 + u128::from(byte - b'0');
    }
    let mantissa = digits << exp2;
    let value = if scale >= 0 {
        mantissa.checked_mul(10u128.checked_pow(scale as u32)?)?
    } else {
        let divisor = 10u128.checked_pow((-scale) as u32)?;
        mantissa.div_ceil(divisor)
    };
    Some(i128::try_from(value).map_or(MAX_NANOS, |v| v.min(MAX_NANOS)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn milli(text: &str) -> i64 {
        Quantity::parse(text).expect(text).milli_value()
    }
    fn value(text: &str) -> i64 {
        Quantity::parse(text).expect(text).value()
    }

    #[test]
    fn decimal_spellings() {
        assert_eq!(milli("100m"), 100);
        assert_eq!(milli("0.5"), 500);
        assert_eq!(milli("1"), 1000);
        assert_eq!(milli("3.2"), 3200);
        assert_eq!(milli("1930m"), 1930);
        assert_eq!(milli("0.95"), 950);
        assert_eq!(value("2k"), 2000);
        assert_eq!(value("500M"), 500_000_000);
        assert_eq!(value("1e9"), 1_000_000_000);
        assert_eq!(value("15e8"), 1_500_000_000);
        assert_eq!(value("1E3"), 1000);
        assert_eq!(value("1e-3"), 1, "rounds up");
        assert_eq!(milli("1e-3"), 1);
        assert_eq!(value("1E"), 1_000_000_000_000_000_000);
        assert_eq!(value("12E"), i64::MAX, "past int64: capped");
    }

    #[test]
    fn binary_spellings() {
        assert_eq!(value("512Mi"), 512 * 1024 * 1024);
        assert_eq!(value("1.5Gi"), 1536 * 1024 * 1024);
        assert_eq!(value("7113128Ki"), 7113128 * 1024);
        assert_eq!(value("2.5Gi"), 2684354560);
        assert_eq!(value("0.1Ki"), 103, "102.4 rounds up");
    }

    #[test]
    fn rounding_goes_up_away_from_zero() {
        assert_eq!(milli("0.0001"), 1);
        assert_eq!(value("1.5"), 2);
        assert_eq!(value("-1.5"), -2);
        assert_eq!(Quantity::parse("1n").map(Quantity::nanos), Ok(1));
        assert_eq!(
            Quantity::parse("0.0000000001").map(Quantity::nanos),
            Ok(1),
            "below a nano rounds up to one nano"
        );
        assert_eq!(
            Quantity::parse(
                "1.0000000000000000000000000000000000000000000000000000000000000000001"
            )
            .map(Quantity::nanos),
            Ok(1_000_000_001)
        );
    }

    #[test]
    fn apimachinery_oddities_are_kept() {
        for zero in ["0", "-", "+", ".", "000", "0.0", "-0", "e3", "m"] {
            assert_eq!(Quantity::parse(zero), Ok(Quantity::ZERO), "{zero:?}");
        }
        assert_eq!(value("1."), 1);
        assert_eq!(milli(".5"), 500);
        assert_eq!(value("+3"), 3);
    }

    #[test]
    fn invalid_spellings() {
        for bad in [
            "", "12x", "1 ", " 1", "1e", "1mi", "abc", "1.2.3", "1e3.5", "--1", "1Ki2", "1i",
        ] {
            assert!(Quantity::parse(bad).is_err(), "{bad:?} should not parse");
        }
        assert_eq!(Quantity::parse("1e"), Err(QuantityError::Suffix));
        assert_eq!(Quantity::parse("12x"), Err(QuantityError::Format));
    }

    #[test]
    fn huge_values_saturate() {
        assert_eq!(value("1e400"), i64::MAX);
        assert_eq!(value("99999999999999999999999999"), i64::MAX);
        assert_eq!(value("-1e400"), -i64::MAX);
        assert_eq!(milli("9223372036854775807"), i64::MAX);
        assert_eq!(value("8Ei"), i64::MAX);
        assert_eq!(value("7Ei"), 7 * (1_i64 << 60));
    }

    proptest! {
        #[test]
        fn never_panics(text in "\\PC{0,40}") {
            let _ = Quantity::parse(&text);
        }

        #[test]
        fn grammar_shaped_input_never_panics(
            text in "[+-]?[0-9]{0,70}(\\.[0-9]{0,70})?([eEinumkKMGTP]{0,3}[+-]?[0-9]{0,12})?"
        ) {
            let _ = Quantity::parse(&text).map(|q| (q.value(), q.milli_value()));
        }

        #[test]
        fn integers_are_exact(n in 0_i64..=i64::MAX / 1000) {
            let q = Quantity::parse(&n.to_string()).expect("integer");
            prop_assert_eq!(q.value(), n);
            prop_assert_eq!(q.milli_value(), n * 1000);
        }

        #[test]
        fn milli_spelling_round_trips(n in 0_i64..10_000_000) {
            prop_assert_eq!(Quantity::parse(&format!("{n}m")).expect("milli").milli_value(), n);
        }

        #[test]
        fn binary_suffix_multiplies(n in 0_i64..1_000_000, shift in 0_usize..4) {
            let suffix = ["Ki", "Mi", "Gi", "Ti"][shift];
            let q = Quantity::parse(&format!("{n}{suffix}")).expect("binary");
            prop_assert_eq!(q.value(), n << (10 * (shift as i64 + 1)));
        }
    }
}
