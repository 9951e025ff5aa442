use crate::metrics::{SageMakerMetric, SeriesKey, Statistic};
pub const INVOCATIONS: SeriesKey = SeriesKey::new(SageMakerMetric::Invocations, Statistic::Sum);
