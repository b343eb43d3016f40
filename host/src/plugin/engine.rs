//! The one wasmtime `Engine`: component model, pooling allocator, epoch interruption, and the
//! thread that ticks the epoch.

use std::time::Duration;

use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig,
};

use super::limits::Limits;

/// The engine settings a `RuntimeBuilder` collects.
#[derive(Debug, Clone)]
pub(crate) struct EngineSettings {
    pub(crate) limits: Limits,
    pub(crate) max_instances: u32,
    pub(crate) epoch_tick: Duration,
    pub(crate) keep_resident: usize,
    pub(crate) quick_compile: bool,
}

pub(crate) fn build(settings: &EngineSettings) -> wasmtime::Result<Engine> {
    let mut pool = PoolingAllocationConfig::new();
    let n = settings.max_instances;
    pool.total_component_instances(n)
        .total_core_instances(n.saturating_mul(8))
        .total_memories(n.saturating_mul(2))
        .total_tables(n.saturating_mul(4))
        .max_core_instances_per_component(32)
        .max_memories_per_component(4)
        .max_tables_per_component(8)
        .max_memory_size(settings.limits.memory)
        // Reset used memory with memset (only the pages the last instance touched, found with
        // the PAGEMAP_SCAN ioctl where the kernel has it) instead of unmapping it, so that the
        // next instance in the slot takes no page faults.
        .linear_memory_keep_resident(settings.keep_resident)
        .table_keep_resident(64 << 10)
        .pagemap_scan(Enabled::Auto);

    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    if settings.quick_compile {
        config.cranelift_opt_level(OptLevel::None);
    }
    Engine::new(&config)
}

/// Ticks `engine`'s epoch every `tick` until the engine is dropped.
///
/// # Errors
///
/// When the thread cannot be started.
pub(crate) fn start_ticker(engine: &Engine, tick: Duration) -> std::io::Result<()> {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("dragoman-epoch".into())
        .spawn(move || {
            loop {
                std::thread::sleep(tick);
                match weak.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => break,
                }
            }
        })?;
    Ok(())
}

/// Epoch ticks for a deadline: rounded up, plus one because the current tick may be nearly
/// over.
pub(crate) fn ticks(deadline: Duration, tick: Duration) -> u64 {
    let ticks = deadline.as_nanos().div_ceil(tick.as_nanos().max(1));
    u64::try_from(ticks).unwrap_or(u64::MAX).saturating_add(1)
}
