//! The host side of the pipeline (feature `std`): reading a config TOML file into a validated
//! [`Config`], with every problem reported as `file:line:col: field.path: message`, and
//! summarizing a config for people ([`describe`]).
//!
//! The file is read twice: once with serde into plain structs (unknown keys and wrong types are
//! rejected there, with the parser's position), and, only when a semantic check fails, once more
//! with a span-preserving document parser to find the line of the field the error names. This is
//! host-only code: the hypervisor reads the compiled [`blob`](crate::blob) instead.

use std::fmt::{self, Write as _};
use std::ops::Range;
use std::path::Path;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use crate::error::{ConfigError, ErrorKind, FieldPath, Segment};
use crate::model::{
    ChannelConfig, ChannelDirection, Cmdline, Config, ConfigBuilder, ConsoleRouting, ConsoleTarget,
    LinuxConfig, Name, Notify, OnExit, PartitionId, PciBdf, PinRoute, PortRange, Region,
    RtConfig, SharedRegion,
};

// The file's schema, as serde sees it. Documented for people in configs/README.md.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileToml {
    machine: MachineToml,
    hypervisor: HypervisorToml,
    #[serde(default)]
    console: ConsoleToml,
    partitions: PartitionsToml,
    linux: LinuxToml,
    rt: RtToml,
    #[serde(default)]
    shared: Vec<SharedToml>,
    #[serde(default)]
    channels: Vec<ChannelToml>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MachineToml {
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HypervisorToml {
    memory: RegionToml,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegionToml {
    base: SizeToml,
    size: SizeToml,
}

/// Each key left out takes its value from [`ConsoleRouting::default`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct ConsoleToml {
    hypervisor: ConsoleTarget,
    rt: ConsoleTarget,
    linux: ConsoleTarget,
}

impl Default for ConsoleToml {
    fn default() -> Self {
        let ConsoleRouting {
            hypervisor,
            rt,
            linux,
        } = ConsoleRouting::default();
        Self {
            hypervisor,
            rt,
            linux,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PartitionsToml {
    linux: PartitionToml,
    rt: PartitionToml,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PartitionToml {
    cpus: Vec<u32>,
    memory: Vec<RegionToml>,
    #[serde(default)]
    ioapic_pins: Vec<PinToml>,
    #[serde(default)]
    io_ports: Vec<PortsToml>,
    #[serde(default)]
    pci_devices: Vec<PciToml>,
    #[serde(default)]
    mmio: Vec<RegionToml>,
}

/// An entry of `ioapic_pins`: the pin alone, or a table that also says where and how it is
/// delivered. Read by hand (not `untagged`) so that a mistake inside the table is reported
/// as itself.
enum PinToml {
    Pin(u32),
    Routed(RoutedPinToml),
}

impl<'de> Deserialize<'de> for PinToml {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PinVisitor;
        impl<'de> Visitor<'de> for PinVisitor {
            type Value = PinToml;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a pin number, or a table { pin, cpu, trigger, polarity }")
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<PinToml, E> {
                u32::try_from(v)
                    .map(PinToml::Pin)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<PinToml, E> {
                u32::try_from(v)
                    .map(PinToml::Pin)
                    .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
            }

            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<PinToml, A::Error> {
                RoutedPinToml::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(PinToml::Routed)
            }
        }
        deserializer.deserialize_any(PinVisitor)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoutedPinToml {
    pin: u32,
    #[serde(default)]
    cpu: Option<u32>,
    #[serde(default)]
    trigger: Option<TriggerToml>,
    #[serde(default)]
    polarity: Option<PolarityToml>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum TriggerToml {
    Edge,
    Level,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum PolarityToml {
    High,
    Low,
}

impl PinToml {
    fn pin_and_route(&self) -> (u32, PinRoute) {
        match self {
            Self::Pin(pin) => (*pin, PinRoute::default()),
            Self::Routed(r) => (
                r.pin,
                PinRoute {
                    cpu: r.cpu,
                    level: r.trigger.map(|t| matches!(t, TriggerToml::Level)),
                    active_low: r.polarity.map(|p| matches!(p, PolarityToml::Low)),
                },
            ),
        }
    }
}

/// An entry of `pci_devices`: the function alone (`"BB:DD.F"`), or a table that also names
/// the IOAPIC pin its INTx arrives on, `{ function = "03:00.0", intx = 17 }` (read by hand
/// for the same reason as [`PinToml`]).
enum PciToml {
    Function(String),
    WithIntx(PciWithIntxToml),
}

impl<'de> Deserialize<'de> for PciToml {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PciVisitor;
        impl<'de> Visitor<'de> for PciVisitor {
            type Value = PciToml;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a PCI function \"BB:DD.F\", or a table { function, intx }")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<PciToml, E> {
                Ok(PciToml::Function(v.to_owned()))
            }

            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<PciToml, A::Error> {
                PciWithIntxToml::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(PciToml::WithIntx)
            }
        }
        deserializer.deserialize_any(PciVisitor)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PciWithIntxToml {
    function: String,
    intx: u32,
}

impl PciToml {
    fn function_and_intx(&self) -> (&str, Option<u32>) {
        match self {
            Self::Function(f) => (f, None),
            Self::WithIntx(t) => (&t.function, Some(t.intx)),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PortsToml {
    base: u16,
    count: u16,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LinuxToml {
    kernel: String,
    #[serde(default)]
    initrd: String,
    #[serde(default)]
    cmdline: String,
    #[serde(default)]
    on_exit: OnExit,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RtToml {
    image: String,
    #[serde(default)]
    doorbells_per_s: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SharedToml {
    name: String,
    base: SizeToml,
    size: SizeToml,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChannelToml {
    name: String,
    region: String,
    direction: ChannelDirection,
    size: SizeToml,
    slot_size: u32,
    /// Absent: `poll` for the hypervisor's channel (the only mode it has), else `doorbell`.
    notify: Option<Notify>,
}

/// A size or address as written: an integer, or a string read by [`parse_size`].
enum SizeToml {
    Int(u64),
    Text(String),
}

impl<'de> Deserialize<'de> for SizeToml {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;
        impl Visitor<'_> for SizeVisitor {
            type Value = SizeToml;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size or address: an integer or a string like \"64 MiB\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<SizeToml, E> {
                Ok(SizeToml::Int(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<SizeToml, E> {
                u64::try_from(v)
                    .map(SizeToml::Int)
                    .map_err(|_| E::custom("a size or address cannot be negative"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SizeToml, E> {
                Ok(SizeToml::Text(v.to_owned()))
            }
        }
        deserializer.deserialize_any(SizeVisitor)
    }
}

/// Reads a size or address written as text: `"64 MiB"`, `"4KiB"`, `"2 GiB"`, `"4096"`,
/// `"0x1000"`, `"0x0800_0000"`. Units are binary (KiB, MiB, GiB, TiB) or `B`; decimal units
/// (`MB`) are refused as ambiguous. `None` for anything else, including overflow.
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        let digits: String = hex.chars().filter(|&c| c != '_').collect();
        if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        return u64::from_str_radix(&digits, 16).ok();
    }
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '_')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let digits: String = number.chars().filter(|&c| c != '_').collect();
    if digits.is_empty() {
        return None;
    }
    let shift = match unit.trim_start() {
        "" | "B" => 0,
        "KiB" => 10,
        "MiB" => 20,
        "GiB" => 30,
        "TiB" => 40,
        _ => return None,
    };
    let value: u64 = digits.parse().ok()?;
    value.checked_mul(1u64 << shift)
}

/// A problem with a config file, located in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file's name as given (or whatever the caller named the text).
    pub origin: String,
    /// 1-based line and column (in characters), when the problem has a place in the text.
    pub location: Option<(usize, usize)>,
    /// What is wrong.
    pub kind: DiagnosticKind,
}

/// What a [`Diagnostic`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiagnosticKind {
    /// The file could not be read.
    Io(String),
    /// The TOML parser or the schema rejected the text: a syntax error, an unknown key, a missing
    /// key, a value of the wrong type. The message is the parser's.
    Toml(String),
    /// The file is well-formed but the config is wrong.
    Config(ConfigError),
}

impl Diagnostic {
    /// The 1-based line, if known.
    pub fn line(&self) -> Option<usize> {
        self.location.map(|(line, _)| line)
    }

    /// The semantic error, if that is what this is.
    pub fn config_error(&self) -> Option<&ConfigError> {
        match &self.kind {
            DiagnosticKind::Config(e) => Some(e),
            _ => None,
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.origin)?;
        if let Some((line, column)) = self.location {
            write!(f, ":{line}:{column}")?;
        }
        match &self.kind {
            DiagnosticKind::Io(message) => write!(f, ": cannot read: {message}"),
            DiagnosticKind::Toml(message) => write!(f, ": {message}"),
            DiagnosticKind::Config(e) => write!(f, ": {e}"),
        }
    }
}

impl std::error::Error for Diagnostic {}

/// 1-based line and column of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let (mut line, mut column) = (1usize, 1usize);
    for (_, c) in text.char_indices().take_while(|&(i, _)| i < offset) {
        if c == '\n' {
            line = line.saturating_add(1);
            column = 1;
        } else {
            column = column.saturating_add(1);
        }
    }
    (line, column)
}

/// Where the field named by `path` is written in `text`: the span of the deepest part of the
/// path that the document has (a missing optional key points at its table).
fn span_of(text: &str, path: &FieldPath) -> Option<Range<usize>> {
    use toml_edit::{Item, Table, Value};

    #[derive(Clone, Copy)]
    enum Node<'a> {
        Table(&'a Table),
        Item(&'a Item),
        Value(&'a Value),
    }

    let doc = toml_edit::Document::parse(text).ok()?;
    let mut node = Node::Table(doc.as_table());
    let mut best = None;
    for segment in path.segments() {
        let step = match (*segment, node) {
            (Segment::Name(_), _) => continue,
            (Segment::Key(key), Node::Table(table) | Node::Item(Item::Table(table))) => table
                .get_key_value(key)
                .map(|(k, item)| (item.span().or_else(|| k.span()), Node::Item(item))),
            (
                Segment::Key(key),
                Node::Value(Value::InlineTable(table))
                | Node::Item(Item::Value(Value::InlineTable(table))),
            ) => table
                .get_key_value(key)
                .map(|(k, item)| (item.span().or_else(|| k.span()), Node::Item(item))),
            (
                Segment::Index(i),
                Node::Value(Value::Array(array)) | Node::Item(Item::Value(Value::Array(array))),
            ) => array.get(i).map(|v| (v.span(), Node::Value(v))),
            (Segment::Index(i), Node::Item(Item::ArrayOfTables(array))) => {
                array.get(i).map(|t| (t.span(), Node::Table(t)))
            }
            _ => None,
        };
        let Some((span, next)) = step else { break };
        if span.is_some() {
            best = span;
        }
        node = next;
    }
    best
}

fn config_error(path: FieldPath, kind: ErrorKind) -> ConfigError {
    ConfigError::new(path, kind)
}

fn name(path: FieldPath, text: &str) -> Result<Name, ConfigError> {
    Name::new(text).map_err(|kind| config_error(path, kind))
}

fn size(path: FieldPath, value: &SizeToml) -> Result<u64, ConfigError> {
    match value {
        SizeToml::Int(v) => Ok(*v),
        SizeToml::Text(text) => {
            parse_size(text).ok_or_else(|| config_error(path, ErrorKind::InvalidSize))
        }
    }
}

fn region(path: FieldPath, r: &RegionToml) -> Result<Region, ConfigError> {
    Ok(Region::new(
        size(path.key("base"), &r.base)?,
        size(path.key("size"), &r.size)?,
    ))
}

fn build(file: &FileToml) -> Result<Config, ConfigError> {
    let mut b = ConfigBuilder::new(
        name(FieldPath::at("machine").key("name"), &file.machine.name)?,
        region(
            FieldPath::at("hypervisor").key("memory"),
            &file.hypervisor.memory,
        )?,
    );
    b.console(ConsoleRouting {
        hypervisor: file.console.hypervisor,
        rt: file.console.rt,
        linux: file.console.linux,
    });

    for (id, part) in [
        (PartitionId::Linux, &file.partitions.linux),
        (PartitionId::Rt, &file.partitions.rt),
    ] {
        let path = FieldPath::partition(id);
        for &cpu in &part.cpus {
            b.push_cpu(id, cpu)?;
        }
        for (i, r) in part.memory.iter().enumerate() {
            b.push_memory(id, region(path.key("memory").index(i), r)?)?;
        }
        for entry in &part.ioapic_pins {
            let (pin, route) = entry.pin_and_route();
            b.push_routed_ioapic_pin(id, pin, route)?;
        }
        for ports in &part.io_ports {
            b.push_io_ports(id, PortRange::new(ports.base, ports.count))?;
        }
        for (i, r) in part.mmio.iter().enumerate() {
            b.push_mmio(id, region(path.key("mmio").index(i), r)?)?;
        }
        for (i, entry) in part.pci_devices.iter().enumerate() {
            let (text, intx) = entry.function_and_intx();
            let at = path.key("pci_devices").index(i);
            let at = if intx.is_some() {
                at.key("function")
            } else {
                at
            };
            let bdf: PciBdf = text.parse().map_err(|kind| config_error(at, kind))?;
            b.push_pci_device_with_intx(id, bdf, intx)?;
        }
    }

    let linux = FieldPath::at("linux");
    b.linux(LinuxConfig::new(
        name(linux.key("kernel"), &file.linux.kernel)?,
        name(linux.key("initrd"), &file.linux.initrd)?,
        Cmdline::new(&file.linux.cmdline)
            .map_err(|kind| config_error(linux.key("cmdline"), kind))?,
        file.linux.on_exit,
    ));
    let rt = RtConfig::new(name(FieldPath::at("rt").key("image"), &file.rt.image)?);
    b.rt(match file.rt.doorbells_per_s {
        Some(per_s) => rt.with_doorbells_per_s(per_s),
        None => rt,
    });

    for (i, s) in file.shared.iter().enumerate() {
        let path = FieldPath::at("shared").index(i);
        b.push_shared(SharedRegion::new(
            name(path.key("name"), &s.name)?,
            Region::new(
                size(path.key("base"), &s.base)?,
                size(path.key("size"), &s.size)?,
            ),
        ))?;
    }

    for (i, c) in file.channels.iter().enumerate() {
        let path = FieldPath::at("channels").index(i);
        b.push_channel(ChannelConfig::new(
            name(path.key("name"), &c.name)?,
            name(path.key("region"), &c.region)?,
            size(path.key("size"), &c.size)?,
            c.slot_size,
            c.direction,
            c.notify.unwrap_or(match c.direction {
                ChannelDirection::HypervisorToLinux => Notify::Poll,
                _ => Notify::Doorbell,
            }),
        ))?;
    }

    b.build()
}

/// Reads and validates a config from `text`; `origin` names it in diagnostics (usually the file
/// path as the user gave it).
pub fn load_str(text: &str, origin: &str) -> Result<Config, Diagnostic> {
    let file: FileToml = toml::from_str(text).map_err(|e| Diagnostic {
        origin: origin.to_owned(),
        location: e.span().map(|span| line_col(text, span.start)),
        kind: DiagnosticKind::Toml(e.message().trim_end().to_owned()),
    })?;
    build(&file).map_err(|e| Diagnostic {
        origin: origin.to_owned(),
        location: span_of(text, &e.path).map(|span| line_col(text, span.start)),
        kind: DiagnosticKind::Config(e),
    })
}

/// Reads and validates the config file at `path`.
pub fn load_file(path: impl AsRef<Path>) -> Result<Config, Diagnostic> {
    let path = path.as_ref();
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| Diagnostic {
        origin: origin.clone(),
        location: None,
        kind: DiagnosticKind::Io(e.to_string()),
    })?;
    load_str(&text, &origin)
}

/// `bytes` in the largest binary unit that divides it exactly: `640 MiB`, `636 KiB`, `4097 B`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [(u32, &str); 4] = [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")];
    for (shift, unit) in UNITS {
        if bytes != 0 && bytes.trailing_zeros() >= shift {
            return format!("{} {unit}", bytes >> shift);
        }
    }
    format!("{bytes} B")
}

/// `bytes` in MiB, with up to two decimals when not whole: `640 MiB`, `639.62 MiB`.
fn mib(bytes: u64) -> String {
    if bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{:.2} MiB", bytes as f64 / f64::from(1u32 << 20))
    }
}

fn join<T: fmt::Display>(items: &[T]) -> String {
    if items.is_empty() {
        return "none".to_owned();
    }
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A summary of the plan for people: what each partition gets, the shared regions and channels.
pub fn describe(cfg: &Config) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = write_description(&mut out, cfg);
    out
}

fn write_description(out: &mut String, cfg: &Config) -> fmt::Result {
    let hv = cfg.hypervisor_region();
    writeln!(out, "machine {}", cfg.name())?;
    writeln!(out, "  hypervisor: {hv} ({})", mib(hv.size))?;
    for id in PartitionId::ALL {
        let part = cfg.partition(id);
        let cpus = part.cpus();
        writeln!(
            out,
            "  {id}: {} CPU{} (APIC ID {}), {} RAM",
            cpus.len(),
            if cpus.len() == 1 { "" } else { "s" },
            join(cpus),
            mib(part.memory_bytes())
        )?;
        for r in part.memory() {
            writeln!(out, "    memory {r} ({})", human_size(r.size))?;
        }
        if !part.ioapic_pins().is_empty() {
            writeln!(out, "    IOAPIC pins {}", join(part.ioapic_pins()))?;
        }
        for (pin, route) in part.ioapic_pins().iter().zip(part.pin_routes()) {
            if route.is_default() {
                continue;
            }
            let cpu = route.cpu.map_or("the first CPU".into(), |c| format!("APIC ID {c}"));
            let how = |v: Option<bool>, yes: &'static str, no: &'static str| match v {
                Some(true) => yes,
                Some(false) => no,
                None => "bus default",
            };
            writeln!(
                out,
                "    pin {pin} -> {cpu}, trigger {}, polarity {}",
                how(route.level, "level", "edge"),
                how(route.active_low, "low", "high")
            )?;
        }
        if !part.io_ports().is_empty() {
            writeln!(out, "    I/O ports {}", join(part.io_ports()))?;
        }
        for r in part.mmio() {
            writeln!(out, "    device registers {r} ({}), uncached", human_size(r.size))?;
        }
        if !part.pci_devices().is_empty() {
            writeln!(out, "    PCI devices {}", join(part.pci_devices()))?;
            for (bdf, pin) in part.pci_devices().iter().zip(part.pci_intx()) {
                if let Some(pin) = pin {
                    writeln!(
                        out,
                        "    {bdf}'s INTx on IOAPIC pin {pin} (as the config says)"
                    )?;
                }
            }
            writeln!(
                out,
                "    note: without VT-d (not used yet) a bus master among these can DMA into any memory, the other partition's and the hypervisor's included"
            )?;
        }
    }
    let linux = cfg.linux();
    writeln!(
        out,
        "  linux boots {} with initrd {}, on exit: {}",
        linux.kernel(),
        linux.initrd().map_or("(none)", Name::as_str),
        linux.on_exit()
    )?;
    writeln!(out, "    cmdline \"{}\"", linux.cmdline())?;
    writeln!(out, "  rt boots {}", cfg.rt().image())?;
    let console = cfg.console();
    writeln!(
        out,
        "  console: hypervisor {}, rt {}, linux {}",
        console.hypervisor, console.rt, console.linux
    )?;
    for s in cfg.shared_regions() {
        writeln!(
            out,
            "  shared {}: {} ({})",
            s.name,
            s.region,
            human_size(s.region.size)
        )?;
    }
    for c in cfg.channels() {
        writeln!(
            out,
            "  channel {}: {} -> {}, in {} at +{:#x}, {}, {} slots of {} bytes, {}",
            c.name(),
            c.direction()
                .producer()
                .map_or_else(|| "hypervisor".to_owned(), |p| p.to_string()),
            c.direction().consumer(),
            c.region_name(),
            c.offset(),
            human_size(c.size()),
            c.slot_count(),
            c.slot_size(),
            c.notify()
        )?;
    }
    Ok(())
}
