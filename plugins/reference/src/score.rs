//! The score rule and the monthly rates of each score band.

/// The lowest score that may borrow.
pub const MINIMUM: u16 = 600;

/// The numbers of instalments offered, in increasing order.
pub const TERMS: [u8; 3] = [6, 9, 12];

/// A monthly interest rate in thousandths: 39 is 3.9 %.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// The rate times 1000.
    pub per_mille: u32,
}

/// The rates of one score band, one per entry of [`TERMS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rates([u32; 3]);

impl Rates {
    /// The terms from `requested` upward, each with its rate.
    pub fn from(self, requested: u8) -> impl Iterator<Item = (u8, Rate)> {
        TERMS
            .into_iter()
            .zip(self.0)
            .filter(move |(terms, _)| *terms >= requested)
            .map(|(terms, per_mille)| (terms, Rate { per_mille }))
    }
}

/// The rates for `score`, or `None` below [`MINIMUM`] or above 1000.
pub fn monthly_rates(score: u16) -> Option<Rates> {
    let rates = match score {
        900..=1000 => [39, 42, 45],
        800..=899 => [47, 50, 53],
        700..=799 => [55, 58, 61],
        600..=699 => [64, 66, 69],
        _ => return None,
    };
    Some(Rates(rates))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bands_have_inclusive_edges() {
        assert_eq!(monthly_rates(599), None);
        assert_eq!(monthly_rates(600), Some(Rates([64, 66, 69])));
        assert_eq!(monthly_rates(699), Some(Rates([64, 66, 69])));
        assert_eq!(monthly_rates(700), Some(Rates([55, 58, 61])));
        assert_eq!(monthly_rates(899), Some(Rates([47, 50, 53])));
        assert_eq!(monthly_rates(900), Some(Rates([39, 42, 45])));
        assert_eq!(monthly_rates(1000), Some(Rates([39, 42, 45])));
        assert_eq!(monthly_rates(1001), None);
    }

    #[test]
    fn terms_never_go_below_the_request() {
        let rates = monthly_rates(950).unwrap();
        let terms: Vec<u8> = rates.from(9).map(|(terms, _)| terms).collect();
        assert_eq!(terms, [9, 12]);
        assert_eq!(rates.from(12).count(), 1);
        assert_eq!(rates.from(6).count(), 3);
    }
}
