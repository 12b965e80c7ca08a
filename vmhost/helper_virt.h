/* The helper's libvirt side (helper_virt.c), linked into vmhost-helper only. */
#pragma once
#include "vmhost/helper.h"

/* Resolves virt_type, prepares an embedded driver's root, starts libvirt's event loop and the
 * connection, and installs the handler of the libvirt messages in hh. Events go to event_fd. */
int hv_start_virt(struct vmh_helper *hh, struct vmhost *vh, int event_fd);
/* Closes the connection (an embedded driver shuts down; its guests keep running). */
void hv_stop_virt(void);
