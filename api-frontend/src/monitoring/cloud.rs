//! Cloud: the provider and instance, as far as the host's firmware tables (DMI, in
//! `/sys/class/dmi/id`) tell. Never a metadata service: the frontend makes no network call
//! to find out, so region and zone stay empty.

use std::collections::HashMap;

use joblet_api_proto::CloudInfo;

use super::source::Source;

/// The world-readable DMI fields used (serials and UUIDs are root-only and not needed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dmi {
    pub sys_vendor: String,
    pub product_name: String,
    pub product_version: String,
    pub bios_vendor: String,
    pub bios_version: String,
    pub board_asset_tag: String,
    pub chassis_asset_tag: String,
    /// `/sys/hypervisor/type` (Xen guests), when present.
    pub hypervisor: String,
}

impl Dmi {
    pub fn read(source: &Source) -> Dmi {
        let get = |rel: &str| {
            source
                .sys_file(rel)
                .map(|s| s.trim().to_owned())
                .unwrap_or_default()
        };
        Dmi {
            sys_vendor: get("class/dmi/id/sys_vendor"),
            product_name: get("class/dmi/id/product_name"),
            product_version: get("class/dmi/id/product_version"),
            bios_vendor: get("class/dmi/id/bios_vendor"),
            bios_version: get("class/dmi/id/bios_version"),
            board_asset_tag: get("class/dmi/id/board_asset_tag"),
            chassis_asset_tag: get("class/dmi/id/chassis_asset_tag"),
            hypervisor: get("hypervisor/type"),
        }
    }
}

/// Azure stamps every VM's chassis with this tag.
const AZURE_ASSET_TAG: &str = "7783-7084-3265-9085-8269-3286-77";

fn provider(d: &Dmi) -> Option<&'static str> {
    let vendor = d.sys_vendor.to_ascii_lowercase();
    let product = d.product_name.to_ascii_lowercase();
    let bios = format!("{} {}", d.bios_vendor, d.bios_version).to_ascii_lowercase();
    if vendor.contains("amazon") || bios.contains("amazon") {
        Some("aws")
    } else if vendor == "google" || product.contains("google compute engine") {
        Some("gcp")
    } else if d.chassis_asset_tag == AZURE_ASSET_TAG {
        Some("azure")
    } else if vendor.contains("digitalocean") {
        Some("digitalocean")
    } else if d.chassis_asset_tag == "OracleCloud.com" {
        Some("oracle")
    } else if vendor.contains("alibaba") {
        Some("alibaba")
    } else if vendor.contains("hetzner") {
        Some("hetzner")
    } else if vendor.contains("openstack") || product.contains("openstack") {
        Some("openstack")
    } else {
        None
    }
}

fn hypervisor_type(d: &Dmi) -> &'static str {
    let all = format!("{} {} {}", d.sys_vendor, d.product_name, d.bios_vendor).to_ascii_lowercase();
    if d.hypervisor == "xen" || all.contains("xen") {
        "xen"
    } else if all.contains("amazon ec2") {
        "nitro"
    } else if all.contains("kvm") || all.contains("qemu") || all.contains("google") {
        "kvm"
    } else if all.contains("vmware") {
        "vmware"
    } else if all.contains("microsoft corporation") {
        "hyper-v"
    } else if all.contains("virtualbox") || all.contains("innotek") {
        "virtualbox"
    } else {
        ""
    }
}

/// The cloud this host runs in, if its firmware names one.
pub fn detect(d: &Dmi) -> Option<CloudInfo> {
    let provider = provider(d)?;
    let mut metadata = HashMap::new();
    for (k, v) in [
        ("sys_vendor", &d.sys_vendor),
        ("product_name", &d.product_name),
        ("source", &"dmi".to_owned()),
    ] {
        if !v.is_empty() {
            metadata.insert(k.to_owned(), v.clone());
        }
    }
    let (instance_id, instance_type) = match provider {
        // On Nitro instances the board's asset tag is the instance id and the product name
        // the instance type.
        "aws" if d.board_asset_tag.starts_with("i-") => {
            (d.board_asset_tag.clone(), d.product_name.clone())
        }
        "aws" if d.product_name.contains('.') => (String::new(), d.product_name.clone()),
        _ => (String::new(), String::new()),
    };
    Some(CloudInfo {
        provider: provider.to_owned(),
        region: String::new(),
        zone: String::new(),
        instance_id,
        instance_type,
        hypervisor_type: hypervisor_type(d).to_owned(),
        metadata,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dmi(vendor: &str, product: &str) -> Dmi {
        Dmi {
            sys_vendor: vendor.into(),
            product_name: product.into(),
            ..Dmi::default()
        }
    }

    #[test]
    fn aws_nitro() {
        let d = Dmi {
            board_asset_tag: "i-0abc123def4567890".into(),
            bios_vendor: "Amazon EC2".into(),
            ..dmi("Amazon EC2", "m5.large")
        };
        let c = detect(&d).unwrap();
        assert_eq!(c.provider, "aws");
        assert_eq!(c.instance_id, "i-0abc123def4567890");
        assert_eq!(c.instance_type, "m5.large");
        assert_eq!(c.hypervisor_type, "nitro");
        assert_eq!(c.metadata["source"], "dmi");
        assert_eq!((c.region.as_str(), c.zone.as_str()), ("", ""));
    }

    #[test]
    fn aws_xen_gcp_azure_and_others() {
        let xen = Dmi {
            bios_version: "4.11.amazon".into(),
            hypervisor: "xen".into(),
            ..dmi("Xen", "HVM domU")
        };
        let c = detect(&xen).unwrap();
        assert_eq!(
            (c.provider.as_str(), c.hypervisor_type.as_str()),
            ("aws", "xen")
        );
        assert_eq!(c.instance_type, "");
        let c = detect(&dmi("Google", "Google Compute Engine")).unwrap();
        assert_eq!(
            (c.provider.as_str(), c.hypervisor_type.as_str()),
            ("gcp", "kvm")
        );
        let azure = Dmi {
            chassis_asset_tag: AZURE_ASSET_TAG.into(),
            ..dmi("Microsoft Corporation", "Virtual Machine")
        };
        let c = detect(&azure).unwrap();
        assert_eq!(
            (c.provider.as_str(), c.hypervisor_type.as_str()),
            ("azure", "hyper-v")
        );
        assert_eq!(
            detect(&dmi("DigitalOcean", "Droplet")).unwrap().provider,
            "digitalocean"
        );
        assert_eq!(
            detect(&dmi("OpenStack Foundation", "OpenStack Nova"))
                .unwrap()
                .provider,
            "openstack"
        );
    }

    #[test]
    fn plain_machines_are_no_cloud() {
        assert_eq!(detect(&Dmi::default()), None);
        assert_eq!(detect(&dmi("QEMU", "Standard PC (Q35 + ICH9, 2009)")), None);
        assert_eq!(detect(&dmi("Dell Inc.", "PowerEdge R740")), None);
        // Hyper-V on premises is not Azure without the asset tag.
        assert_eq!(
            detect(&dmi("Microsoft Corporation", "Virtual Machine")),
            None
        );
    }

    #[test]
    fn reads_dmi_files() {
        let dir = tempfile::tempdir().unwrap();
        let id = dir.path().join("class/dmi/id");
        std::fs::create_dir_all(&id).unwrap();
        std::fs::write(id.join("sys_vendor"), "Amazon EC2\n").unwrap();
        std::fs::write(id.join("product_name"), "t3.micro\n").unwrap();
        let source = Source {
            sys: dir.path().to_owned(),
            ..Source::default()
        };
        let d = Dmi::read(&source);
        assert_eq!(d.product_name, "t3.micro");
        assert_eq!(d.bios_vendor, "");
        assert_eq!(detect(&d).unwrap().instance_type, "t3.micro");
    }
}
